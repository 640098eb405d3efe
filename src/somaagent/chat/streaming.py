"""A streamed chat turn's events: the stored user message, each delta, then the stored reply
(or an error event), as :class:`~somaagent.chat.events.TurnEvent`\\ s; and the same three events
for a replayed exchange. :class:`~somaagent.chat.turns.ChatTurns` opens the stream; this
module reads it and builds the completion the turn settles with (counting the tokens itself
when the provider reported no usage).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing
from typing import Any

from somaagent import types
from somaagent.chat.conversations import message_public
from somaagent.chat.events import TurnEvent
from somaagent.chat.settle import Turn
from somaagent.errors import APIError, ProviderError
from somaagent.llm import tokens
from somaagent.llm.base import ChatMessage, Completion, StreamChunk
from somaagent.llm.fallback import Attempt, FallbackStream
from somaagent.llm.specs import ModelSpec

__all__ = ["Fail", "Finish", "counted_usage", "replay", "turn_events"]

Finish = Callable[
    [Turn, ModelSpec, Completion, tuple[Attempt, ...]], Awaitable[types.MessageExchange]
]
"""Settles a turn a model answered (:func:`~somaagent.chat.settle.finish`, bound)."""

Fail = Callable[[Turn, Exception, tuple[Attempt, ...]], Awaitable[None]]
"""Settles a turn no model answered (:func:`~somaagent.chat.settle.fail`, bound)."""


async def turn_events(
    turn: Turn, opened: FallbackStream, *, finish: Finish, fail: Fail
) -> AsyncIterator[TurnEvent]:
    """The events of a streamed turn whose model stream is ``opened``.

    Args:
        turn: the prepared turn (its user message is already stored).
        opened: the model's stream, opened down the fallback chain.
        finish: settles the turn once the stream ends; its stored reply is the last event.
        fail: settles the turn when the stream fails part-way; an ``error`` event follows.

    Yields:
        ``message.created``, then ``message.delta`` per non-empty chunk, then
        ``message.completed`` (or ``error``).
    """
    yield TurnEvent("message.created", {"message": _dump(message_public(turn.user_message))})
    parts: list[str] = []
    usage: types.Usage | None = None
    finish_reason: str | None = None
    try:
        async with aclosing(opened.__aiter__()) as chunks:
            chunk: StreamChunk
            async for chunk in chunks:
                if chunk.delta:
                    parts.append(chunk.delta)
                    yield TurnEvent("message.delta", {"delta": chunk.delta})
                usage = chunk.usage or usage
                finish_reason = chunk.finish_reason or finish_reason
    except (ProviderError, APIError) as exc:
        await fail(turn, exc, opened.attempts)
        yield TurnEvent("error", error=exc)
        return
    spec = opened.spec
    content = "".join(parts)
    if usage is None:
        usage = counted_usage(spec, turn.request.messages, content)
    completion = Completion(
        content=content,
        model=spec.provider_model_id,
        provider=spec.provider,
        usage=usage,
        finish_reason=finish_reason,
    )
    exchange = await finish(turn, spec, completion, opened.attempts)
    yield TurnEvent("message.completed", {"message": _dump(exchange.reply)})


def counted_usage(spec: ModelSpec, messages: Sequence[ChatMessage], answer: str) -> types.Usage:
    """A streamed call's usage counted as ``spec`` would, for a provider that reported none."""
    prompt = tokens.count_messages(messages, spec)
    completion_tokens = tokens.count_text(answer, spec)
    return types.Usage(
        prompt_tokens=prompt,
        completion_tokens=completion_tokens,
        total_tokens=prompt + completion_tokens,
    )


async def replay(exchange: types.MessageExchange) -> AsyncIterator[TurnEvent]:
    """A stored exchange (an idempotent retry) as the three events of a streamed turn."""
    yield TurnEvent("message.created", {"message": _dump(exchange.message)})
    yield TurnEvent("message.delta", {"delta": exchange.reply.content})
    yield TurnEvent("message.completed", {"message": _dump(exchange.reply)})


def _dump(model: types.Message) -> dict[str, Any]:
    return model.model_dump(mode="json")
