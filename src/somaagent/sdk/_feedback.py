"""``client.feedback()``, ``client.route_train()`` and ``client.route_report()``: telling the
router how its answers did, and training it on that (``POST /v1/feedback``,
``POST /v1/route/train``, ``GET /v1/route/report``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from somaagent.sdk._base import APICall
from somaagent.sdk._calls import drop_none, model_parser

__all__ = [
    "FeedbackResult",
    "RouteReport",
    "RouteTrainResult",
    "feedback_call",
    "route_report_call",
    "route_train_call",
]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


class FeedbackResult(_Wire):
    """The rated answer: its id, the model that gave it, and the score kept (0-1)."""

    id: str
    model: str
    score: float


class RouteTrainResult(_Wire):
    """A training run on the tenant's feedback: held-out error before and after, and whether
    the new heads were promoted (only when better)."""

    promoted: bool
    message: str
    rated: int = 0
    trained_on: int = 0
    held_out: int = 0
    models: dict[str, int] = Field(default_factory=dict)
    before: dict[str, Any] = Field(default_factory=dict)
    after: dict[str, Any] = Field(default_factory=dict)


class RouteReport(_Wire):
    """The tenant's routing: per-model calls, ratings and win rates; savings realised against
    the best-predicted model's cost for the same tokens; its promoted heads, if any."""

    routed: int
    rated: int
    models: dict[str, dict[str, Any]] = Field(default_factory=dict)
    cost_usd: float = 0.0
    reference_cost_usd: float = 0.0
    savings_realised: float | None = None
    mean_score: float | None = None
    win_rate: float | None = None
    heads: dict[str, Any] | None = None


def feedback_call(
    answer_id: str,
    rating: Literal["up", "down"] | None,
    *,
    score: float | None,
    comment: str | None,
) -> APICall[FeedbackResult]:
    """``POST /v1/feedback``: rate a routed answer by its message or completion id."""
    body = drop_none(id=answer_id, rating=rating, score=score, comment=comment)
    return APICall("POST", "/v1/feedback", model_parser(FeedbackResult), json=body)


def route_train_call() -> APICall[RouteTrainResult]:
    """``POST /v1/route/train``: fit the tenant's router heads on its feedback."""
    return APICall("POST", "/v1/route/train", model_parser(RouteTrainResult), json={})


def route_report_call() -> APICall[RouteReport]:
    """``GET /v1/route/report``: the tenant's routing report."""
    return APICall("GET", "/v1/route/report", model_parser(RouteReport))
