"""Context fitting: the conversation's newest turns that fit the model's window."""

from __future__ import annotations

from somaagent.chat.tables import Message
from somaagent.errors import ValidationError
from somaagent.llm import tokens
from somaagent.llm.base import ChatMessage
from somaagent.llm.specs import ModelSpec

__all__ = ["as_chat_message", "fit_context"]


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
