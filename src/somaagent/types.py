"""Pydantic models shared by the gateway's API and the SDK.

Request models (``XCreate``) forbid unknown fields so a typo is a 422 naming the field;
response models (``XPublic`` or plain nouns) ignore unknown fields so an older SDK keeps
working against a newer gateway.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

Role = Literal["system", "user", "assistant"]
Scope = Literal["admin", "member"]

MAX_MESSAGE_CHARS = 100_000


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Usage(_Response):
    """Token usage of one model call."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class Message(_Response):
    """A stored message. Assistant messages carry model, usage, cost and latency."""

    id: str
    conversation_id: str
    role: Role
    content: str
    model: str | None = None
    provider: str | None = None
    usage: Usage | None = None
    cost_usd: float | None = None
    latency_ms: float | None = None
    created_at: datetime


class Conversation(_Response):
    """A conversation: an ordered list of messages owned by one tenant."""

    id: str
    title: str | None = None
    system_prompt: str | None = None
    model: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime


class PromptInvocation(_Request):
    """A stored prompt template to render: ``name``, ``name@version`` or ``name:label``."""

    name: str = Field(min_length=1, max_length=200)
    variables: dict[str, Any] = Field(default_factory=dict)


class ConversationCreate(_Request):
    title: str | None = Field(default=None, max_length=500)
    system_prompt: str | None = Field(default=None, max_length=MAX_MESSAGE_CHARS)
    prompt: PromptInvocation | None = Field(
        default=None, description="render a stored template as the system prompt"
    )
    model: str | None = Field(default=None, max_length=200, description="default model")
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_system_prompt(self) -> ConversationCreate:
        if self.prompt is not None and self.system_prompt is not None:
            raise ValueError("send either prompt or system_prompt, not both")
        return self


class MessageCreate(_Request):
    content: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)
    model: str | None = Field(default=None, max_length=200)
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1, le=32_768)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)


class MessageExchange(_Response):
    """The answer to a message send: the stored user message and the assistant's reply."""

    message: Message
    reply: Message


T = TypeVar("T")


class Page(_Response, Generic[T]):
    """One page of a list; pass ``next_cursor`` back as ``cursor`` for the next page."""

    data: list[T]
    next_cursor: str | None = None
    has_more: bool = False


class ModelInfo(_Response):
    """A model the gateway can route to, with its prices per million tokens."""

    id: str
    provider: str
    provider_model_id: str
    context_window: int
    max_output_tokens: int | None = None
    input_cost_per_mtok: float
    output_cost_per_mtok: float
    available: bool = True


class StreamEvent(_Response):
    """One Server-Sent Event: ``message.delta``, ``message.completed`` or ``error``."""

    event: str
    id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class ApiKeyInfo(_Response):
    id: str
    name: str
    tenant: str
    scope: Scope
    prefix: str
    created_at: datetime
    revoked_at: datetime | None = None


class Problem(_Response):
    """An ``application/problem+json`` body (RFC 9457)."""

    type: str
    title: str
    status: int
    detail: str | None = None
    request_id: str | None = None
    errors: list[dict[str, Any]] = Field(default_factory=list)
