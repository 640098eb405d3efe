"""Settling a chat turn: what a finished or failed turn leaves behind.

A finished turn stores the reply with its usage, cost, latency and route (and the idempotency
record's exchange), charges the caller's key, counts every model call of the fallback chain in
the metrics and, for a routed reply, keeps its outcome record. A failed turn counts its calls
and marks its idempotency record failed, so a retry with the same key runs again.
:class:`~somaagent.chat.turns.ChatTurns` prepares and runs the turn; this module settles it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from somaagent import types
from somaagent.accounts.keys import Principal
from somaagent.accounts.usage import UsageLedger
from somaagent.chat import idempotency
from somaagent.chat.conversations import ConversationService, message_public, retry_on_seq_race
from somaagent.chat.tables import Message
from somaagent.llm import cost
from somaagent.llm.base import ChatRequest, Completion
from somaagent.llm.fallback import Attempt
from somaagent.llm.feedback import RouteFeedback
from somaagent.llm.policy import RoutingDecision
from somaagent.llm.specs import ModelSpec

__all__ = ["CallRecorder", "Turn", "charge", "fail", "finish", "record_attempts"]


class CallRecorder(Protocol):
    """Records each model call (the gateway's metrics)."""

    def record_model_call(
        self,
        *,
        provider: str,
        model: str,
        seconds: float,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        error_type: str = "",
    ) -> None: ...


@dataclass(slots=True)
class Turn:
    """A prepared chat turn: the stored user message, the decision and the request."""

    user_message: Message
    decision: RoutingDecision
    request: ChatRequest
    idempotency_id: str | None
    sources: list[dict[str, Any]] | None = None
    started: float = field(default_factory=time.perf_counter)


async def finish(
    who: Principal,
    turn: Turn,
    spec: ModelSpec,
    completion: Completion,
    attempts: tuple[Attempt, ...],
    *,
    conversations: ConversationService,
    usage: UsageLedger,
    calls: CallRecorder,
    outcomes: RouteFeedback | None,
) -> types.MessageExchange:
    """Settle a turn that ``spec`` answered with ``completion``: charge the key, count the
    calls, store the reply (with its route) and keep a routed reply's outcome record.

    Args:
        who: the caller, whose key is charged and whose tenant owns the conversation.
        turn: the prepared turn.
        spec: the model that answered (the chosen one or a fallback).
        completion: its answer, with usage.
        attempts: every try down the fallback chain, failed ones included.
        conversations: where the reply is stored.
        usage: the ledger that charges the key.
        calls: the model-call metrics.
        outcomes: keeps a routed reply's outcome record; ``None``: none kept.

    Returns:
        The stored exchange (the user's message and the reply).
    """
    tokens = completion.usage
    seconds = time.perf_counter() - turn.started
    record_attempts(calls, attempts, spec, seconds, tokens)
    price = charge(usage, who, spec, tokens, endpoint="conversations")
    extra: dict[str, Any] = {"route": _route_summary(turn.decision, spec, attempts)}
    if turn.sources is not None:
        extra["sources"] = turn.sources

    async def store() -> types.MessageExchange:
        async with conversations.sessions() as session:
            conversation = await conversations.load(session, who, turn.user_message.conversation_id)
            reply = await conversations.append(
                session,
                who,
                conversation,
                role="assistant",
                content=completion.content,
                model=spec.name,
                provider=spec.provider,
                prompt_tokens=tokens.prompt_tokens,
                completion_tokens=tokens.completion_tokens,
                cost_usd=price,
                latency_ms=round(seconds * 1000, 3),
                extra=extra,
            )
            exchange = types.MessageExchange(
                message=message_public(turn.user_message), reply=message_public(reply)
            )
            if turn.idempotency_id is not None:
                await idempotency.complete(session, turn.idempotency_id, exchange)
            await session.commit()
        return exchange

    exchange = await retry_on_seq_race(store)
    conversations.memory.message_stored(who.tenant, exchange.reply)
    if outcomes is not None and turn.decision.candidates:  # routed, not a named model
        await outcomes.record(
            who.tenant,
            exchange.reply.id,
            turn.decision,
            spec,
            prompt_tokens=tokens.prompt_tokens,
            completion_tokens=tokens.completion_tokens,
            cost_usd=float(price),
            messages=turn.request.messages,
            answer=completion.content,
        )
    return exchange


def charge(
    ledger: UsageLedger, who: Principal, spec: ModelSpec, tokens: types.Usage, *, endpoint: str
) -> float:
    """Charge ``who``'s key for a call ``spec`` answered with ``tokens`` (recorded under
    ``endpoint``); returns what it cost."""
    price = cost.cost_usd(spec, tokens)
    ledger.record(
        who,
        endpoint=endpoint,
        model=spec.name,
        provider=spec.provider,
        usage=tokens,
        cost_usd=price,
    )
    return price


def record_attempts(
    calls: CallRecorder,
    attempts: tuple[Attempt, ...],
    spec: ModelSpec | None,
    seconds: float,
    usage: types.Usage | None,
) -> None:
    """Count each failed try of the chain and, when one answered (``spec`` and ``usage``),
    the answering call with its tokens."""
    for attempt in attempts:
        if attempt.outcome == "failed":
            calls.record_model_call(
                provider=attempt.provider,
                model=attempt.model,
                seconds=attempt.latency_ms / 1000,
                error_type=attempt.error_type or "error",
            )
    if spec is not None and usage is not None:
        calls.record_model_call(
            provider=spec.provider,
            model=spec.name,
            seconds=seconds,
            input_tokens=usage.prompt_tokens,
            output_tokens=usage.completion_tokens,
        )


async def fail(
    who: Principal,
    turn: Turn,
    exc: Exception,
    *,
    conversations: ConversationService,
    calls: CallRecorder,
    attempts: tuple[Attempt, ...] = (),
) -> None:
    """Settle a turn that no model answered: count its calls (the chain's tries, from
    ``attempts`` or the error; else the one call to the chosen model) and mark its
    idempotency record failed."""
    attempts = attempts or tuple(getattr(exc, "attempts", ()))
    if attempts:
        record_attempts(calls, attempts, None, 0.0, None)
    else:
        spec = turn.decision.spec
        calls.record_model_call(
            provider=spec.provider,
            model=spec.name,
            seconds=time.perf_counter() - turn.started,
            error_type=type(exc).__name__,
        )
    if turn.idempotency_id is None:
        return
    async with conversations.sessions() as session:
        await idempotency.fail(session, turn.idempotency_id, who.tenant)
        await session.commit()


def _route_summary(
    decision: RoutingDecision, spec: ModelSpec, attempts: tuple[Attempt, ...]
) -> dict[str, Any]:
    return {
        "model": spec.name,
        "chosen": decision.spec.name,
        "reason": decision.reason,
        "estimated_cost_usd": decision.estimated_cost_usd,
        "fallbacks": [s.name for s in decision.fallbacks],
        "attempts": [a.describe() for a in attempts],
    }
