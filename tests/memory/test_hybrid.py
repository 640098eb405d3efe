"""Fusion maths: reciprocal rank, weighted min-max, single modes, ties, options."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from somaagent.memory.hybrid import (
    SearchOptions,
    fuse,
    min_max,
    reciprocal_rank_fusion,
    weighted_fusion,
)


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    document: str | None = None
    metadata: dict[str, object] = field(default_factory=dict)


VECTOR = [Hit("a", 0.9, "A"), Hit("b", 0.8, "B"), Hit("c", 0.5, "C")]
KEYWORD = [Hit("c", 12.0, "C"), Hit("d", 6.0, "D"), Hit("a", 3.0, "A")]


def test_min_max() -> None:
    assert min_max([]) == []
    assert min_max([2.0, 4.0, 3.0]) == [0.0, 1.0, 0.5]
    assert min_max([7.0, 7.0]) == [1.0, 1.0]


def test_reciprocal_rank_fusion_scores() -> None:
    hits = reciprocal_rank_fusion(VECTOR, KEYWORD, k=10, rrf_k=60)
    best = 2 / 61
    expected = {
        "a": (1 / 61 + 1 / 63) / best,
        "c": (1 / 63 + 1 / 61) / best,
        "b": (1 / 62) / best,
        "d": (1 / 62) / best,
    }
    assert {h.id: h.score for h in hits} == pytest.approx(expected)
    # a and c tie; b and d tie: broken by best rank in either list, then by id.
    assert [h.id for h in hits] == ["a", "c", "b", "d"]
    a = hits[0]
    assert (a.vector_rank, a.keyword_rank, a.vector_score, a.keyword_score) == (1, 3, 0.9, 3.0)
    assert hits[2].keyword_rank is None and hits[3].vector_rank is None
    assert all(0.0 <= h.score <= 1.0 for h in hits)
    assert [h.id for h in reciprocal_rank_fusion(VECTOR, KEYWORD, k=2)] == ["a", "c"]


def test_first_in_both_lists_scores_one() -> None:
    (hit,) = reciprocal_rank_fusion([Hit("x", 0.7)], [Hit("x", 2.0)], k=5)
    assert hit.score == pytest.approx(1.0)


def test_weighted_fusion() -> None:
    hits = weighted_fusion(VECTOR, KEYWORD, k=10, alpha=0.5)
    scores = {h.id: h.score for h in hits}
    # vector min-max: a 1, b 0.75, c 0; keyword min-max: c 1, d 1/3, a 0.
    assert scores == pytest.approx({"a": 0.5, "b": 0.375, "c": 0.5, "d": 1 / 6})
    assert [h.id for h in hits] == ["a", "c", "b", "d"]
    assert [h.id for h in weighted_fusion(VECTOR, KEYWORD, k=3, alpha=1.0)] == ["a", "b", "c"]
    assert [h.id for h in weighted_fusion(VECTOR, KEYWORD, k=3, alpha=0.0)] == ["c", "d", "a"]


def test_an_id_repeated_in_one_list_counts_once() -> None:
    repeated = [Hit("a", 0.9), Hit("a", 0.8), Hit("b", 0.1)]
    rrf = {h.id: h for h in reciprocal_rank_fusion(repeated, [], k=5)}
    assert rrf["a"].vector_rank == 1 and rrf["b"].vector_rank == 3
    weighted = {h.id: h.score for h in weighted_fusion(repeated, [], k=5, alpha=1.0)}
    assert weighted == pytest.approx({"a": 1.0, "b": 0.0})


def test_single_modes_keep_each_sides_score() -> None:
    vector_only = fuse(VECTOR, KEYWORD, k=2, options=SearchOptions(mode="vector"))
    assert [(h.id, h.score, h.keyword_score) for h in vector_only] == [
        ("a", 0.9, None),
        ("b", 0.8, None),
    ]
    keyword_only = fuse(VECTOR, KEYWORD, k=3, options=SearchOptions(mode="keyword"))
    assert [h.id for h in keyword_only] == ["c", "d", "a"]
    assert [h.score for h in keyword_only] == pytest.approx([1.0, 1 / 3, 0.0])
    assert keyword_only[0].keyword_score == 12.0 and keyword_only[0].document == "C"
    weighted = fuse(VECTOR, KEYWORD, k=1, options=SearchOptions(fusion="weighted", alpha=0.0))
    assert weighted[0].id == "c"
    assert fuse([], [], k=3, options=SearchOptions()) == []


def test_options() -> None:
    assert SearchOptions().depth(10) == 50
    assert SearchOptions().depth(20) == 100
    assert SearchOptions(candidates=30).depth(40) == 40
    assert SearchOptions(mode="vector").depth(7) == 7
    for bad in (
        {"alpha": 1.5},
        {"rrf_k": 0},
        {"candidates": 0},
        {"mode": "fuzzy"},
        {"fusion": "max"},
    ):
        with pytest.raises(ValueError):
            SearchOptions(**bad)
