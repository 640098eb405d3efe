"""Fitting a tenant's own quality heads from its rated routed answers (no database here).

:func:`fit_tenant_heads` is the whole training step of ``soma route train``
(:meth:`somaagent.llm.feedback.RouteFeedback.train` reads the rated outcomes and stores what
this returns): the rated answers are split by a hash of their id, four fifths to fit and one
fifth held out; each model with at least :data:`MIN_PER_MODEL` training ratings gets a ridge
head of the score on the prompt's heads input, pulled towards the public head of the same model
(:func:`~.learned.fitting.fit_head`); the new heads are judged on the held-out fifth against the
predictions the router made at the time (Brier score: the mean squared error of the predicted
quality) and promoted only when they do better. ``bench/router_tenant.py`` runs the same
function on a simulated tenant's traffic.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from somaagent.errors import ValidationError
from somaagent.llm.learned.heads import Head, QualityHeads
from somaagent.llm.learned.quality import EVIDENCE_TENANT

__all__ = [
    "MIN_PER_MODEL",
    "MIN_RATED",
    "PROBLEM_NOT_ENOUGH_FEEDBACK",
    "TENANT_ALPHA",
    "Rated",
    "TenantFit",
    "fit_tenant_heads",
    "held_out",
    "not_enough_feedback",
]

MIN_RATED = 30
"""Rated outcomes a training run needs at least (a fifth of them are held out)."""
MIN_PER_MODEL = 10
"""Rated training outcomes a model needs for a tenant head of its own."""
TENANT_ALPHA = 1.0
"""Ridge pull towards the public head. :func:`~.learned.fitting.fit_head` normalises the rows'
weights, so this pull stays the same against the mean squared error however many ratings there
are. A pull that faded with the count (the public head worth a fixed number of ratings) did
worse on ``bench/router_tenant.py``'s MMLU tenant at 200 to 3,200 ratings (2026-12-02): with
about 400 inputs per head, the tenant's data needs the strong pull."""
PROBLEM_NOT_ENOUGH_FEEDBACK = "urn:somaagent:problem:not-enough-feedback"


@dataclass(frozen=True, slots=True)
class Rated:
    """One rated routed answer.

    Attributes:
        id: the outcome's id (message or completion id); its hash decides the held-out fifth.
        model: the registry model that answered.
        x: the prompt's heads input, as recorded (``None``: recorded without the embedding).
        predicted: the quality the router predicted for ``model`` at the time.
        score: the rating, in [0, 1].
    """

    id: str
    model: str
    x: tuple[float, ...] | None
    predicted: float
    score: float


@dataclass(frozen=True, slots=True)
class TenantFit:
    """What a training run produced: the heads (stored only if ``promoted``) and its report."""

    heads: QualityHeads
    promoted: bool
    report: dict[str, Any]


def held_out(outcome_id: str) -> bool:
    """Whether the rated answer with this id is in the held-out fifth."""
    return int(hashlib.sha1(outcome_id.encode()).hexdigest()[:8], 16) % 5 == 0


def not_enough_feedback(count: int) -> ValidationError:
    """The 422 of a training run with too little data: how much there is and how much is
    needed."""
    message = (
        f"not enough feedback to train: {count} rated routed answers, at least "
        f"{MIN_RATED} are needed (a fifth held out to judge the result), with "
        f"{MIN_PER_MODEL} or more for a model to get a head of its own; rate answers "
        "with POST /v1/feedback or soma feedback ID up|down"
    )
    return ValidationError(
        message,
        errors=[{"loc": ["body"], "msg": message, "type": "not_enough_feedback"}],
        problem_type=PROBLEM_NOT_ENOUGH_FEEDBACK,
    )


def fit_tenant_heads(tenant: str, public: QualityHeads, rated: Sequence[Rated]) -> TenantFit:
    """Fit, judge and report a tenant's heads (see the module doc).

    Raises:
        ValidationError: too little rated data; the message says how much is needed.
    """
    usable = [r for r in rated if r.x is not None]
    train = [r for r in usable if not held_out(r.id)]
    held = [r for r in usable if held_out(r.id)]
    per_model: dict[str, list[Rated]] = {}
    for r in train:
        per_model.setdefault(r.model, []).append(r)
    fitted = {m: rows for m, rows in per_model.items() if len(rows) >= MIN_PER_MODEL}
    if len(usable) < MIN_RATED or not held or not fitted:
        raise not_enough_feedback(len(usable))
    heads = _fit(public, fitted)
    before = _brier([(r.predicted, r.score) for r in held])
    after = _brier([(_predicted(heads, r), r.score) for r in held])
    promoted = after < before
    report = {
        "tenant": tenant,
        "rated": len(usable),
        "trained_on": len(train),
        "held_out": len(held),
        "models": {m: len(rows) for m, rows in sorted(fitted.items())},
        "before": {"brier": round(before, 4), "evidence": "the router's predictions at the time"},
        "after": {"brier": round(after, 4), "evidence": EVIDENCE_TENANT},
        "promoted": promoted,
        "message": (
            "promoted: the tenant heads predicted the held-out feedback better"
            if promoted
            else "not promoted: the tenant heads did not beat the current predictions on "
            "the held-out feedback; the current heads stay"
        ),
    }
    return TenantFit(heads=heads, promoted=promoted, report=report)


def _fit(public: QualityHeads, fitted: dict[str, list[Rated]]) -> QualityHeads:
    import numpy as np

    from somaagent.llm.learned.fitting import fit_head

    heads: dict[str, Head] = {}
    for model, rows in fitted.items():
        x = np.array([r.x for r in rows], dtype=np.float64)
        y = np.array([r.score for r in rows])
        data_name = public.by_registry.get(model)
        prior = public.heads[data_name] if data_name else None
        heads[model] = fit_head(x, y, np.ones(len(rows)), TENANT_ALPHA, prior)
    spread = math.sqrt(
        sum((heads[m].predict(r.x or ()) - r.score) ** 2 for m, rs in fitted.items() for r in rs)
        / max(1, sum(len(rs) for rs in fitted.values()))
    )
    return QualityHeads(
        heads=heads,
        registry={m: m for m in heads},
        dense_mean=public.dense_mean,
        dense_std=public.dense_std,
        embedding_model=public.embedding_model,
        embedding_dim=public.embedding_dim,
        embedding_scale=public.embedding_scale,
        gain_sd=max(spread, 0.05),
        evidence=EVIDENCE_TENANT,
        training={"models": {m: len(rs) for m, rs in fitted.items()}},
    )


def _predicted(heads: QualityHeads, r: Rated) -> float:
    """The new heads' prediction for a held-out answer (the old one where no head applies)."""
    if r.model in heads.heads and r.x:
        return heads.heads[r.model].predict(r.x)
    return r.predicted


def _brier(pairs: Sequence[tuple[float, float]]) -> float:
    return sum((p - y) ** 2 for p, y in pairs) / max(1, len(pairs))
