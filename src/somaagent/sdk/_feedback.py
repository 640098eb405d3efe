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
    "RatedScores",
    "RoutePeriod",
    "RoutePeriods",
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


class RatedScores(_Wire):
    """How many answers of a period have a score of one kind, and their mean (0-1)."""

    rated: int = 0
    mean_score: float | None = None


class RoutePeriod(_Wire):
    """The tenant's routed answers in one period: how many, what they cost against the
    reference, and the quality held (explicit ratings and shadow-judge scores apart)."""

    routed: int = 0
    cost_usd: float = 0.0
    cost_per_answer_usd: float | None = None
    reference_cost_usd: float = 0.0
    savings_realised: float | None = None
    rated: int = 0
    mean_score: float | None = None
    explicit: RatedScores = Field(default_factory=RatedScores)
    shadow: RatedScores = Field(default_factory=RatedScores)


class RoutePeriods(_Wire):
    """Before and after the tenant's heads (split at their ``trained_at``; everything is
    ``before_heads`` until heads are promoted), and the change in cost per answer and in mean
    score between them."""

    split_at: str | None = None
    before_heads: RoutePeriod = Field(default_factory=RoutePeriod)
    after_heads: RoutePeriod = Field(default_factory=RoutePeriod)
    comparison: dict[str, float | None] | None = None


class RouteReport(_Wire):
    """The tenant's routing: per-model calls, ratings and win rates; savings realised against
    the best-predicted model's cost for the same tokens; cost and quality before and after its
    heads; the shadow evaluation (judge spend, status); its promoted heads, if any."""

    routed: int
    rated: int
    rated_explicit: int = 0
    rated_shadow: int = 0
    judge_cost_usd: float = 0.0
    periods: RoutePeriods = Field(default_factory=RoutePeriods)
    shadow: dict[str, Any] | None = None
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
