"""Tenant feedback on routed answers, and training the router on it (HTTP only).

* ``POST /v1/feedback``: rate a routed answer by its message or completion id, with a
  ``score`` in [0, 1] or a ``rating`` of ``up``/``down``; another tenant's id or an unknown one
  is a 404.
* ``POST /v1/route/train``: fit the tenant's own router heads from its feedback; they are
  promoted only when they predict held-out feedback better (422 with how much data is needed
  when there is too little).
* ``GET /v1/route/report``: per-model win rates, savings realised and the quality held.

The logic is :class:`somaagent.llm.feedback.RouteFeedback`; these handlers only translate. A
conversation reply (``msg_...``) gets its outcome record when it is first rated: the handler
reads the tenant's reply and the user message before it from the chat tables.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from somaagent.chat.tables import Message
from somaagent.errors import ServiceUnavailableError
from somaagent.gateway.auth import CurrentPrincipal, State
from somaagent.gateway.state import GatewayState
from somaagent.llm.feedback import RouteFeedback, score_of

__all__ = ["FeedbackRequest", "router"]

router = APIRouter(prefix="/v1", tags=["route"])


class FeedbackRequest(BaseModel):
    """A verdict on one routed answer; unknown fields are a 422."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=64, description="message or completion id")
    score: float | None = Field(default=None, ge=0.0, le=1.0)
    rating: Literal["up", "down"] | None = None
    comment: str | None = Field(default=None, max_length=2000)


def _service(state: GatewayState) -> RouteFeedback:
    service = state.route_feedback
    if service is None:
        raise ServiceUnavailableError("route feedback is not running on this gateway")
    return service


@router.post("/feedback")
async def send_feedback(body: FeedbackRequest, who: CurrentPrincipal, state: State) -> Any:
    """Rate a routed answer (message or completion id)."""
    score = score_of(body.score, body.rating)
    service = _service(state)
    if body.id.startswith("msg") and not await service.known(who.tenant, body.id):
        await _record_reply(state, service, who.tenant, body.id)
    return await service.feedback(who.tenant, body.id, score, comment=body.comment)


async def _record_reply(
    state: GatewayState, service: RouteFeedback, tenant: str, message_id: str
) -> None:
    """The outcome record of a conversation reply, from the chat tables (tenant-scoped: another
    tenant's message is not found, so the feedback is a 404)."""
    async with state.sessions() as session:
        reply = await session.get(Message, message_id)
        if reply is None or reply.tenant_id != tenant or reply.role != "assistant":
            return
        prompt = await session.scalar(
            select(Message.content)
            .where(
                Message.conversation_id == reply.conversation_id,
                Message.tenant_id == tenant,
                Message.seq < reply.seq,
                Message.role == "user",
            )
            .order_by(Message.seq.desc())
            .limit(1)
        )
    if prompt is None or reply.model is None:
        return
    await service.record_reply(
        tenant,
        message_id,
        prompt=prompt,
        model=reply.model,
        prompt_tokens=reply.prompt_tokens or 0,
        completion_tokens=reply.completion_tokens or 0,
        cost_usd=reply.cost_usd or 0.0,
    )


@router.post("/route/train")
async def train_route(who: CurrentPrincipal, state: State) -> Any:
    """Fit the tenant's router heads from its feedback; promote them only if better."""
    return await _service(state).train(who.tenant)


@router.get("/route/report")
async def route_report(who: CurrentPrincipal, state: State) -> Any:
    """The tenant's routing report: per-model win rates, savings realised, its heads."""
    return await _service(state).report(who.tenant)
