"""Pydantic models shared by the gateway's API and the SDK.

Request models (``XCreate``) forbid unknown fields so a typo is a 422 naming the field;
response models (``XPublic`` or plain nouns) ignore unknown fields so an older SDK keeps
working against a newer gateway.

This package holds the conversation, routing and fault models; each other resource's wire
models have a module of their own (:mod:`.memory`, :mod:`.prompts` with the template spec and
file format in :mod:`.templates`, ...), imported where used. Everything here imports only
pydantic, PyYAML (lazily) and the standard library, so the SDK and the CLI can use it without
the server extra; the server packages import their wire models from here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

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
    route: dict[str, Any] | None = Field(
        default=None, description="assistant messages: the routing decision and the attempts"
    )
    sources: list[dict[str, Any]] | None = Field(
        default=None, description="assistant messages grounded in a collection: what they cite"
    )
    created_at: datetime


class Conversation(_Response):
    """A conversation: an ordered list of messages owned by one tenant."""

    id: str
    title: str | None = None
    system_prompt: str | None = None
    model: str | None = None
    last_model: str | None = Field(
        default=None, description="the model of the latest reply, when there is one"
    )
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime


class PromptInvocation(_Request):
    """A stored prompt template to render: ``name``, ``name@version`` or ``name:label``."""

    name: str = Field(min_length=1, max_length=200)
    variables: dict[str, Any] = Field(default_factory=dict)


class ConversationCreate(_Request):
    title: str | None = Field(default=None, max_length=500)
    system_prompt: Text | None = Field(default=None, max_length=MAX_MESSAGE_CHARS)
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


def _encodable(value: str | None) -> str | None:
    """Refuse text that is not valid Unicode (a lone surrogate from a JSON ``\\ud800``)."""
    if value is not None:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"not valid Unicode text at character {exc.start}") from exc
    return value


Text = Annotated[str, AfterValidator(_encodable)]


class MessageCreate(_Request):
    content: Text = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)
    model: str | None = Field(default=None, max_length=200)
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1, le=32_768)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    policy: dict[str, Any] | None = Field(
        default=None,
        description="a routing policy (the fields of RoutingPolicy) for the router to apply",
    )
    """A routing policy for this message: the fields of :class:`RoutingPolicy` as JSON.

    Kept a plain object here so that the gateway validates it (an unknown or invalid field is a
    422 naming ``body.policy.<field>``) and an older SDK can send fields a newer gateway added.
    """
    collection: str | None = Field(
        default=None, max_length=200, description="a memory collection to ground the answer in"
    )
    filter: dict[str, Any] | None = Field(
        default=None, description="a metadata filter on the collection's chunks"
    )


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
    monthly_budget_usd: float | None = None


class Problem(_Response):
    """An ``application/problem+json`` body (RFC 9457)."""

    type: str
    title: str
    status: int
    detail: str | None = None
    request_id: str | None = None
    errors: list[dict[str, Any]] = Field(default_factory=list)


# -- routing: ``POST /v1/route`` and the ``policy`` of a message ----------------------------
# Copies of the server's schemas (somaagent.llm.policy.RoutingPolicy and the response models of
# somaagent.gateway.routes.route), so that the SDK loads no server code;
# tests/sdk/test_route_sdk.py checks that their field names stay the same.

RouteCapability = Literal["tools", "json_mode", "vision", "streaming", "reasoning"]
"""A capability a routing policy can require (the registry's ``Capability``)."""

RouteTaskCategory = Literal["coding", "math", "reasoning", "writing", "extraction", "chat"]
"""A task category the router knows (the registry's ``TaskCategory``)."""


class RoutingPolicy(_Request):
    """What to ask of the router; every field is optional and an unknown field is an error.

    Pass it as ``policy=`` to ``client.route()``, ``client.chat()`` or
    ``conversations.send_message()``; a plain mapping with the same keys works too (and is
    validated by the gateway instead).

    Attributes:
        min_quality: the predicted quality (0-1) the model must reach on this prompt.
        max_quality_drop: how far below the best eligible model's prediction the choice may be
            (the gateway's default is 0.05 when ``min_quality`` is not set).
        max_cost_usd: the most the call may cost, estimated before it.
        max_latency_ms: the most the call may take, estimated.
        capabilities: capabilities the model must have.
        providers: only models of these providers.
        models: only these models (registry names or aliases).
        task: the task category, instead of the guessed one.
        fallbacks: the fallback chain for this request, instead of the gateway's.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_quality: float | None = Field(default=None, ge=0.0, le=1.0)
    max_quality_drop: float | None = Field(default=None, ge=0.0, le=1.0)
    max_cost_usd: float | None = Field(default=None, gt=0.0, allow_inf_nan=False)
    max_latency_ms: float | None = Field(default=None, gt=0.0, allow_inf_nan=False)
    capabilities: list[RouteCapability] | None = None
    providers: list[str] | None = Field(default=None, min_length=1)
    models: list[str] | None = Field(default=None, min_length=1, max_length=100)
    task: RouteTaskCategory | None = None
    fallbacks: list[str] | None = Field(default=None, max_length=10)

    def as_body(self) -> dict[str, Any]:
        """The policy as sent in a request body: the fields that were set."""
        return self.model_dump(mode="json", exclude_none=True)


class RouteCandidate(_Response):
    """One registry model as the router saw it for a prompt.

    Attributes:
        model: the registry name.
        provider: its provider.
        eligible: whether no constraint ruled it out.
        chosen: whether it is the decision's model.
        predicted_quality: its expected quality on this prompt (0-1).
        estimated_cost_usd: the prompt plus the expected answer at its prices.
        estimated_latency_ms: its expected latency.
        prompt_tokens: the prompt, counted with its tokenizer.
        expected_output_tokens: the answer length the estimates assume.
        error_rate: its recent error rate at the gateway.
        breaker: its circuit breaker: ``closed``, ``open`` or ``half_open``.
        excluded_by: the constraint that ruled it out (``None``: eligible).
        why: why it was chosen, excluded or passed over.
    """

    model: str
    provider: str
    eligible: bool
    chosen: bool
    predicted_quality: float
    estimated_cost_usd: float
    estimated_latency_ms: float
    prompt_tokens: int = 0
    expected_output_tokens: int = 0
    error_rate: float = 0.0
    breaker: str = "closed"
    excluded_by: str | None = None
    why: str = ""


class RouteComplexity(_Response):
    """How hard the router judged the prompt, and what it needs.

    Attributes:
        difficulty: 0 (trivial) to 1 (hard).
        category: the task category (``coding``, ``math``, ``chat``, ...).
        expected_output_tokens: the answer length the estimates assume.
        capabilities: the capabilities the prompt needs.
        features: the features the estimate was made from.
    """

    difficulty: float
    category: str
    expected_output_tokens: int = 0
    capabilities: list[str] = Field(default_factory=list)
    features: dict[str, Any] = Field(default_factory=dict)


class RouteDecision(_Response):
    """The answer of ``POST /v1/route``: the model the router would choose, and why.

    Attributes:
        model: the chosen model's registry name.
        provider: its provider.
        provider_model_id: the provider's id for it.
        reason: one sentence on why it was chosen.
        predicted_quality: its predicted quality on the prompt.
        quality_bar: the predicted quality the choice had to reach.
        estimated_cost_usd: its estimated cost, before the call.
        estimated_latency_ms: its estimated latency.
        fallbacks: the models tried next, in order, if it fails.
        complexity: the prompt's difficulty and category.
        learned: the learned router's predictions (``weak``, ``strong``), when it ran.
        evidence: where the predictions came from (``learned from tenant data``, ``learned
            from public data``, ``prior``).
        confidence: how sure the choice is about the quality bar (0.5-1).
        evidence_note: why better evidence was not used (a failing embedder, a broken artifact).
        policy: the policy applied (the fields that were set).
        candidates: every registry model with its estimates and verdict.
        decision_ms: how long deciding took at the gateway.
    """

    model: str
    provider: str
    provider_model_id: str
    reason: str
    predicted_quality: float | None = None
    quality_bar: float
    estimated_cost_usd: float | None = None
    estimated_latency_ms: float | None = None
    fallbacks: list[str] = Field(default_factory=list)
    complexity: RouteComplexity
    learned: dict[str, float] | None = None
    evidence: str = "prior"
    confidence: float | None = None
    evidence_note: str | None = None
    policy: dict[str, Any] = Field(default_factory=dict)
    candidates: list[RouteCandidate] = Field(default_factory=list)
    decision_ms: float = 0.0

    @property
    def chosen(self) -> RouteCandidate | None:
        """The chosen model's candidate entry, if the gateway listed it."""
        return next((c for c in self.candidates if c.chosen), None)


# -- chaos: the gateway's fault points (``/v1/admin/faults``) --------------------------------

FaultPointName = Literal["vector-store", "embedder", "model"]
"""A fault point inside the gateway: the vector store, the embedding model, the chat models."""


class _FaultFields(BaseModel):
    latency_ms: float = Field(default=0, ge=0, le=600_000, description="added to each call")
    jitter_ms: float = Field(default=0, ge=0, le=600_000, description="± around the latency")
    loss_percent: float = Field(
        default=0,
        ge=0,
        le=100,
        description="chance per try that a call's request is 'lost' and resent after "
        "loss_rto_ms (doubling each time, at most 6 times), as TCP would",
    )
    loss_rto_ms: float = Field(default=200, gt=0, le=60_000)
    abort: bool = Field(
        default=False, description="fail calls with the dependency's own 'unavailable' error"
    )
    partition: bool = Field(
        default=False,
        description="calls hang until the fault is cleared, or fail as timed out after stall_s",
    )
    stall_s: float = Field(default=30, gt=0, le=3600)
    percent: float = Field(
        default=100, gt=0, le=100, description="the share of calls the fault applies to"
    )
    ttl_s: float = Field(
        default=300,
        gt=0,
        le=86_400,
        description="the fault clears itself after this long, even if nobody clears it",
    )
    experiment: str | None = Field(
        default=None, max_length=63, description="who set it, e.g. a chaos experiment's name"
    )

    def describe(self) -> str:
        """A short human description, such as ``latency 100 ms ± 10 ms on 50% of calls``."""
        parts = []
        if self.latency_ms or self.jitter_ms:
            jitter = f" ± {self.jitter_ms:g} ms" if self.jitter_ms else ""
            parts.append(f"latency {self.latency_ms:g} ms{jitter}")
        if self.loss_percent:
            parts.append(f"loss {self.loss_percent:g}%")
        if self.abort:
            parts.append("calls fail (unavailable)")
        if self.partition:
            parts.append(f"partition (calls stall up to {self.stall_s:g} s)")
        text = ", ".join(parts) or "no fault"
        return text if self.percent == 100 else f"{text} on {self.percent:g}% of calls"


class FaultCreate(_FaultFields):
    """A fault for one of the gateway's fault points (``PUT /v1/admin/faults/{point}``)."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _something_to_do(self) -> FaultCreate:
        acts = self.latency_ms or self.jitter_ms or self.loss_percent
        if not (acts or self.abort or self.partition):
            raise ValueError(
                "a fault needs at least one of latency_ms, jitter_ms, loss_percent, "
                "abort or partition"
            )
        return self


class Fault(_FaultFields):
    """A fault in place on a fault point."""

    model_config = ConfigDict(extra="ignore")


class FaultPoint(_Response):
    """One of the gateway's fault points and the fault on it, if any.

    Attributes:
        name: the point (``vector-store``, ``embedder``, ``model``).
        description: which calls pass through it.
        fault: the fault in place; ``None`` when the point is clear.
        set_at, expires_at: when the fault was set and when it clears itself.
        hits: calls that met the fault since it was set.
    """

    name: FaultPointName
    description: str
    fault: Fault | None = None
    set_at: datetime | None = None
    expires_at: datetime | None = None
    hits: int = 0
