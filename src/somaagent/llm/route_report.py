"""The tenant's routing report: what :meth:`RouteFeedback.report` returns.

Per model: calls, ratings, win rate (score >= 0.5), mean score, cost and reference cost (what
the best-predicted eligible model would have cost for the same tokens). Overall: the same, the
judge's spend, and the shadow evaluation's status when it runs.

``periods`` answers "did routing on my own traffic get cheaper at the same quality?": the
outcomes are split at the moment the tenant's current heads were promoted (``created_at``
against their ``trained_at``): ``before_heads`` (the router's public heads and priors) and
``after_heads`` (the tenant's own). Each period gives its routed answers, cost, cost per answer,
reference cost, savings realised and quality: the mean score of its rated answers, overall and
for explicit ratings and shadow-judge scores apart (an answer rated explicitly counts as
explicit even when the judge also scored it). ``comparison`` gives the change in cost per answer
and in mean score from before to after, once both periods have answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from somaagent.llm.tables import RouteOutcome, TenantRouteHeads

__all__ = ["build_report"]


def _round(value: float | None, places: int = 4) -> float | None:
    return None if value is None else round(value, places)


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _per_model(rows: Sequence[RouteOutcome]) -> dict[str, dict[str, Any]]:
    grouped: dict[str, list[RouteOutcome]] = {}
    for r in rows:
        grouped.setdefault(r.model, []).append(r)
    models = {}
    for name, group in grouped.items():
        scores = [r.score for r in group if r.score is not None]
        models[name] = {
            "calls": len(group),
            "cost_usd": round(sum(r.cost_usd for r in group), 6),
            "reference_cost_usd": round(sum(r.reference_cost_usd for r in group), 6),
            "rated": len(scores),
            "win_rate": _round(sum(1 for s in scores if s >= 0.5) / len(scores))
            if scores
            else None,
            "mean_score": _round(_mean(scores)),
        }
    return models


def _period(rows: Sequence[RouteOutcome]) -> dict[str, Any]:
    cost = sum(r.cost_usd for r in rows)
    reference = sum(r.reference_cost_usd for r in rows)
    scores = [r.score for r in rows if r.score is not None]
    explicit = [r.score for r in rows if r.score is not None and r.feedback_source == "explicit"]
    shadow = [r.score for r in rows if r.score is not None and r.feedback_source == "shadow"]
    return {
        "routed": len(rows),
        "cost_usd": round(cost, 6),
        "cost_per_answer_usd": round(cost / len(rows), 8) if rows else None,
        "reference_cost_usd": round(reference, 6),
        "savings_realised": round(1.0 - cost / reference, 4) if reference > 0 else None,
        "rated": len(scores),
        "mean_score": _round(_mean(scores)),
        "explicit": {"rated": len(explicit), "mean_score": _round(_mean(explicit))},
        "shadow": {"rated": len(shadow), "mean_score": _round(_mean(shadow))},
    }


def _comparison(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any] | None:
    if not before["routed"] or not after["routed"]:
        return None
    b_cost, a_cost = before["cost_per_answer_usd"], after["cost_per_answer_usd"]
    b_score, a_score = before["mean_score"], after["mean_score"]
    return {
        "cost_per_answer_change": round(a_cost / b_cost - 1.0, 4) if b_cost else None,
        "mean_score_change": round(a_score - b_score, 4)
        if a_score is not None and b_score is not None
        else None,
    }


def build_report(
    tenant: str,
    rows: Sequence[RouteOutcome],
    heads_row: TenantRouteHeads | None,
    shadow: dict[str, Any] | None,
) -> dict[str, Any]:
    """The report for ``tenant`` from its outcome records, its heads row and the shadow
    judge's status (``None``: not running)."""
    scores = [r.score for r in rows if r.score is not None]
    cost = sum(r.cost_usd for r in rows)
    reference = sum(r.reference_cost_usd for r in rows)
    if heads_row is None:
        before_rows, after_rows = list(rows), []
    else:
        cut = _aware(heads_row.trained_at)
        before_rows = [r for r in rows if _aware(r.created_at) < cut]
        after_rows = [r for r in rows if _aware(r.created_at) >= cut]
    before, after = _period(before_rows), _period(after_rows)
    return {
        "tenant": tenant,
        "routed": len(rows),
        "rated": len(scores),
        "rated_explicit": sum(1 for r in rows if r.feedback_source == "explicit"),
        "rated_shadow": sum(1 for r in rows if r.feedback_source == "shadow"),
        "models": _per_model(rows),
        "cost_usd": round(cost, 6),
        "reference_cost_usd": round(reference, 6),
        "savings_realised": round(1.0 - cost / reference, 4) if reference > 0 else None,
        "mean_score": _round(_mean(scores)),
        "win_rate": _round(sum(1 for s in scores if s >= 0.5) / len(scores)) if scores else None,
        "judge_cost_usd": round(sum(r.judge_cost_usd or 0.0 for r in rows), 6),
        "periods": {
            "split_at": None if heads_row is None else _aware(heads_row.trained_at).isoformat(),
            "before_heads": before,
            "after_heads": after,
            "comparison": _comparison(before, after),
        },
        "shadow": shadow,
        "heads": None
        if heads_row is None
        else {"trained_at": heads_row.trained_at.isoformat(), **heads_row.report},
    }
