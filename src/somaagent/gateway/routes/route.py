"""``POST /v1/route``: explain a routing decision without calling a model.

The body is a prompt (or a conversation) and an optional policy; the answer is the model the
router would choose, its fallbacks, every candidate with its predicted quality, estimated cost
and latency and why it was or was not chosen, and the reason. Nothing is sent to any provider.

The gateway's :class:`~somaagent.llm.router.Router` is made at start-up and shared with the
chat endpoints, so the decisions explained here are the ones they make.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, model_validator

from somaagent.gateway.auth import CurrentPrincipal, State
from somaagent.gateway.state import GatewayState
from somaagent.llm.base import ChatMessage
from somaagent.llm.router import Router, RoutingPolicy
from somaagent.types import MAX_MESSAGE_CHARS

__all__ = ["RouteRequest", "RouteResponse", "get_router", "router"]

router = APIRouter(prefix="/v1", tags=["route"])


def get_router(state: GatewayState) -> Router:
    """The gateway's router (one per gateway, shared with the chat endpoints)."""
    return state.router


class RouteMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=MAX_MESSAGE_CHARS)


class RouteRequest(BaseModel):
    """A prompt or a conversation to route, with an optional policy; unknown fields are a 422."""

    model_config = ConfigDict(extra="forbid")

    prompt: str | None = Field(default=None, min_length=1, max_length=MAX_MESSAGE_CHARS)
    messages: list[RouteMessage] | None = Field(default=None, min_length=1, max_length=1000)
    policy: RoutingPolicy | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    stream: bool = False

    @model_validator(mode="after")
    def _one_input(self) -> RouteRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of 'prompt' and 'messages'")
        return self

    def chat_messages(self) -> list[ChatMessage]:
        """The conversation to route."""
        if self.messages is None:
            return [{"role": "user", "content": self.prompt or ""}]
        return [{"role": m.role, "content": m.content} for m in self.messages]


class RouteCandidate(BaseModel):
    """One registry model as the router saw it."""

    model: str
    provider: str
    eligible: bool
    chosen: bool
    predicted_quality: float
    estimated_cost_usd: float
    estimated_latency_ms: float
    prompt_tokens: int
    expected_output_tokens: int
    error_rate: float
    breaker: Literal["closed", "open", "half_open"]
    excluded_by: str | None
    why: str


class RouteComplexity(BaseModel):
    difficulty: float
    category: str
    expected_output_tokens: int
    capabilities: list[str]
    features: dict[str, Any]


class RouteResponse(BaseModel):
    """The decision: the model, its fallbacks, the reason, and every candidate."""

    model: str
    provider: str
    provider_model_id: str
    reason: str
    predicted_quality: float | None
    quality_bar: float
    estimated_cost_usd: float | None
    estimated_latency_ms: float | None
    fallbacks: list[str]
    complexity: RouteComplexity
    learned: dict[str, float] | None
    evidence: str = "prior"
    confidence: float | None = None
    evidence_note: str | None = None
    policy: dict[str, Any]
    candidates: list[RouteCandidate]
    decision_ms: float


@router.post("/route", response_model=RouteResponse)
async def explain_route(body: RouteRequest, who: CurrentPrincipal, state: State) -> RouteResponse:
    """Explain which model the router would choose for a prompt, and why; calls no model."""
    decision = get_router(state).decide(
        body.chat_messages(),
        body.policy,
        available=state.pool.is_available,
        max_tokens=body.max_tokens,
        stream=body.stream,
        tenant=who.tenant,
    )
    return RouteResponse.model_validate(decision.as_dict())
