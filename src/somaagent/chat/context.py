"""Context fitting: the conversation's newest turns that fit the model's window."""

from __future__ import annotations

from somaagent.chat.tables import Message
from somaagent.errors import ValidationError
from somaagent.llm import tokens
from somaagent.llm.base import ChatMessage
from somaagent.llm.specs import ModelSpec

__all__ = ["as_chat_message", "check_max_tokens", "fit_context"]


def check_max_tokens(spec: ModelSpec, max_tokens: int | None) -> None:
    """The one ``max_tokens`` rule for a named model, on every chat path: no more than the
    model can write in one answer (its ``max_output_tokens``); above that, a 422 naming the
    field, never a request forwarded for the provider to refuse or cut."""
    if max_tokens is not None and max_tokens > spec.max_output_tokens:
        message = (
            f"max_tokens {max_tokens} is above what {spec.name} can write in one answer "
            f"({spec.max_output_tokens} tokens)"
        )
        raise ValidationError(
            message,
            errors=[{"loc": ["body", "max_tokens"], "msg": message, "type": "value_error"}],
        )


def fit_context(
    spec: ModelSpec, system: list[ChatMessage], turns: list[ChatMessage], max_tokens: int
) -> list[ChatMessage]:
    """The newest turns that fit ``spec``'s context window with room for the reply.

    Raises:
        ValidationError: even the last turn alone does not fit (names ``content``).
    """
    budget = spec.context_window - max_tokens
    while turns:
        if tokens.count_messages(system + turns, spec) <= budget:
            return system + turns
        if len(turns) == 1:
            break
        turns = turns[1:]
    raise ValidationError(
        f"the message does not fit the context window of {spec.name} "
        f"({spec.context_window} tokens, {max_tokens} kept for the reply)",
        errors=[
            {"loc": ["body", "content"], "msg": "too long for the model", "type": "value_error"}
        ],
    )


def as_chat_message(message: Message) -> ChatMessage:
    """A stored message as a model sees it."""
    return {"role": message.role, "content": message.content}  # type: ignore[typeddict-item]
