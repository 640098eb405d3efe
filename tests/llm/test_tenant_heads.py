"""fit_tenant_heads: the training step of `soma route train`, without the database."""

from __future__ import annotations

import random

import pytest

from somaagent.errors import ValidationError
from somaagent.llm.learned.heads import Head, QualityHeads
from somaagent.llm.learned.quality import EVIDENCE_PUBLIC, EVIDENCE_TENANT
from somaagent.llm.tenant_heads import (
    MIN_RATED,
    PROBLEM_NOT_ENOUGH_FEEDBACK,
    Rated,
    fit_tenant_heads,
    held_out,
)


def _public() -> QualityHeads:
    """Public heads that predict 0.5 for everything (two features)."""
    flat = Head(bias=0.5, weights=(0.0, 0.0))
    return QualityHeads(
        heads={"weak-data": flat, "strong-data": flat},
        registry={"weak-data": "weak", "strong-data": "strong"},
        dense_mean=(0.0, 0.0),
        dense_std=(1.0, 1.0),
        embedding_model="none",
        embedding_dim=0,
        embedding_scale=1.0,
        gain_sd=0.2,
        evidence=EVIDENCE_PUBLIC,
        training={},
    )


def _rated(n: int, *, learnable: bool) -> list[Rated]:
    """``weak`` answers scored 1 when the first feature is positive, else 0, the router having
    predicted 0.5 (``learnable``); or scores the features know nothing of, which the router
    had predicted well (0.8 or 0.2) from something else."""
    rng = random.Random(7)
    rows = []
    for i in range(n):
        x = (rng.uniform(-1, 1), rng.uniform(-1, 1))
        if learnable:
            rows.append(Rated(f"msg-{i}", "weak", x, 0.5, float(x[0] > 0)))
        else:
            score = float(rng.random() < 0.5)
            rows.append(Rated(f"msg-{i}", "weak", x, 0.2 + 0.6 * score, score))
    return rows


def test_learnable_feedback_is_promoted_and_predicts_it() -> None:
    fit = fit_tenant_heads("t1", _public(), _rated(200, learnable=True))
    assert fit.promoted
    assert fit.report["after"]["brier"] < fit.report["before"]["brier"] - 0.05
    assert fit.report["held_out"] == sum(held_out(f"msg-{i}") for i in range(200))
    assert fit.heads.evidence == EVIDENCE_TENANT
    weak = fit.heads.heads["weak"]
    assert weak.predict((0.8, 0.0)) > 0.6 > 0.4 > weak.predict((-0.8, 0.0))
    assert "strong" not in fit.heads.heads  # no ratings for it: no head of its own


def test_noise_is_not_promoted() -> None:
    fit = fit_tenant_heads("t1", _public(), _rated(200, learnable=False))
    assert not fit.promoted
    assert fit.report["after"]["brier"] >= fit.report["before"]["brier"]
    assert "not promoted" in fit.report["message"]


def test_too_little_feedback_says_how_much_is_needed() -> None:
    rows = [*_rated(MIN_RATED - 1, learnable=True), Rated("no-x", "weak", None, 0.5, 1.0)]
    with pytest.raises(ValidationError) as caught:
        fit_tenant_heads("t1", _public(), rows)
    assert f"{MIN_RATED - 1} rated routed answers" in str(caught.value)
    assert f"at least {MIN_RATED}" in str(caught.value)
    assert caught.value.problem_type == PROBLEM_NOT_ENOUGH_FEEDBACK
