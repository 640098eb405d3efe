"""Tenant feedback on routed answers, and training the router on it (HTTP only).

* ``POST /v1/feedback``: rate a routed answer by its message or completion id, with a
  ``score`` in [0, 1] or a ``rating`` of ``up``/``down``; another tenant's id or an unknown one
  is a 404.
* ``POST /v1/route/train``: fit the tenant's own router heads from its feedback; they are
  promoted only when they predict held-out feedback better (422 with how much data is needed
  when there is too little).
* ``GET /v1/route/report``: per-model win rates, savings realised and the quality held.

The logic is :class:`somaagent.llm.feedback.RouteFeedback`; these handlers only translate.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

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
    return await _service(state).feedback(who.tenant, body.id, score, comment=body.comment)


@router.post("/route/train")
async def train_route(who: CurrentPrincipal, state: State) -> Any:
    """Fit the tenant's router heads from its feedback; promote them only if better."""
    return await _service(state).train(who.tenant)


@router.get("/route/report")
async def route_report(who: CurrentPrincipal, state: State) -> Any:
    """The tenant's routing report: per-model win rates, savings realised, its heads."""
    return await _service(state).report(who.tenant)
