"""Hybrid search: fusing the vector store's ranking with the keyword index's.

Two fusions, chosen per query (:class:`SearchOptions`):

* ``rrf``, reciprocal rank fusion (Cormack, Clarke & Büttcher, SIGIR 2009): a result's score is
  the sum over the rankings it appears in of ``1 / (rrf_k + rank)``, with ``rrf_k = 60`` by
  default. It uses ranks only, so it needs no calibration between BM25's unbounded scores and
  cosine similarities. Reported divided by its largest possible value (first in every ranking),
  so it lies in [0, 1].
* ``weighted``: each ranking's scores are min-max normalised to [0, 1] over its candidates,
  then ``alpha * vector + (1 - alpha) * keyword``; a result missing from one ranking scores 0
  there. ``alpha = 1`` is pure vector, ``0`` pure keyword.

``mode`` picks ``vector`` or ``keyword`` alone, or ``hybrid``. Ties are broken by the best rank
in either list, then by id, so a query always returns the same order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

__all__ = [
    "DEFAULT_RRF_K",
    "FusedHit",
    "FusionMethod",
    "Ranked",
    "SearchMode",
    "SearchOptions",
    "fuse",
    "min_max",
    "reciprocal_rank_fusion",
    "weighted_fusion",
]

DEFAULT_RRF_K = 60
SearchMode = Literal["vector", "keyword", "hybrid"]
FusionMethod = Literal["rrf", "weighted"]


class Ranked(Protocol):
    """What fusion reads from a search hit (a vector store's or the keyword index's)."""

    @property
    def id(self) -> str: ...

    @property
    def score(self) -> float: ...

    @property
    def document(self) -> str | None: ...

    @property
    def metadata(self) -> Mapping[str, object]: ...


@dataclass(frozen=True, slots=True)
class SearchOptions:
    """How one query searches.

    Attributes:
        mode: ``vector``, ``keyword`` or ``hybrid``.
        fusion: ``rrf`` or ``weighted`` (hybrid only).
        alpha: the vector side's weight in ``weighted`` fusion, 0 to 1.
        rrf_k: the rank offset of reciprocal rank fusion.
        candidates: how many results each side contributes before fusion; ``None``:
            ``max(50, 5 * k)``.

    Raises:
        ValueError: a value out of range.
    """

    mode: SearchMode = "hybrid"
    fusion: FusionMethod = "rrf"
    alpha: float = 0.5
    rrf_k: int = DEFAULT_RRF_K
    candidates: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("vector", "keyword", "hybrid"):
            raise ValueError(f"mode must be vector, keyword or hybrid, not {self.mode!r}")
        if self.fusion not in ("rrf", "weighted"):
            raise ValueError(f"fusion must be rrf or weighted, not {self.fusion!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be between 0 and 1, not {self.alpha}")
        if self.rrf_k < 1:
            raise ValueError(f"rrf_k must be at least 1, not {self.rrf_k}")
        if self.candidates is not None and self.candidates < 1:
            raise ValueError(f"candidates must be at least 1, not {self.candidates}")

    def depth(self, k: int) -> int:
        """How many candidates to fetch from each side for a top-``k`` answer."""
        if self.mode != "hybrid":
            return k
        return max(k, self.candidates if self.candidates is not None else max(50, 5 * k))


@dataclass(frozen=True, slots=True)
class FusedHit:
    """One result of a (possibly hybrid) search.

    Attributes:
        id: the record's id (a chunk id).
        score: the result's score in [0, 1] (see the module docstring for what it means).
        document: the stored text.
        metadata: the stored metadata.
        vector_score: the vector store's normalised score, if the vector side found it.
        keyword_score: the BM25 score, if the keyword side found it.
        vector_rank: its rank on the vector side, from 1.
        keyword_rank: its rank on the keyword side, from 1.
    """

    id: str
    score: float
    document: str
    metadata: dict[str, object] = field(default_factory=dict)
    vector_score: float | None = None
    keyword_score: float | None = None
    vector_rank: int | None = None
    keyword_rank: int | None = None


def min_max(scores: Sequence[float]) -> list[float]:
    """Scores scaled to [0, 1] by the list's minimum and maximum; all 1.0 when they are equal."""
    if not scores:
        return []
    low, high = min(scores), max(scores)
    if high - low <= 1e-12:
        return [1.0] * len(scores)
    return [(s - low) / (high - low) for s in scores]


@dataclass(slots=True)
class _Entry:
    hit: Ranked
    fused: float = 0.0
    vector_score: float | None = None
    keyword_score: float | None = None
    vector_rank: int | None = None
    keyword_rank: int | None = None


def _entries(vector: Sequence[Ranked], keyword: Sequence[Ranked]) -> dict[str, _Entry]:
    entries: dict[str, _Entry] = {}
    for rank, hit in enumerate(vector, start=1):
        if hit.id not in entries:
            entries[hit.id] = _Entry(hit, vector_score=hit.score, vector_rank=rank)
    for rank, hit in enumerate(keyword, start=1):
        entry = entries.get(hit.id)
        if entry is None:
            entries[hit.id] = _Entry(hit, keyword_score=hit.score, keyword_rank=rank)
        elif entry.keyword_rank is None:
            entry.keyword_score, entry.keyword_rank = hit.score, rank
    return entries


def _ranked(entries: Mapping[str, _Entry], k: int) -> list[FusedHit]:
    def order(entry: _Entry) -> tuple[float, int, str]:
        best = min(r for r in (entry.vector_rank, entry.keyword_rank) if r is not None)
        return (-entry.fused, best, entry.hit.id)

    return [
        FusedHit(
            id=e.hit.id,
            score=min(1.0, max(0.0, e.fused)),
            document=e.hit.document or "",
            metadata=dict(e.hit.metadata),
            vector_score=e.vector_score,
            keyword_score=e.keyword_score,
            vector_rank=e.vector_rank,
            keyword_rank=e.keyword_rank,
        )
        for e in sorted(entries.values(), key=order)[:k]
    ]


def reciprocal_rank_fusion(
    vector: Sequence[Ranked],
    keyword: Sequence[Ranked],
    *,
    k: int,
    rrf_k: int = DEFAULT_RRF_K,
) -> list[FusedHit]:
    """Fuse two rankings by reciprocal rank; the top ``k``.

    Each result scores ``sum(1 / (rrf_k + rank))`` over the rankings it is in, divided by
    ``2 / (rrf_k + 1)`` (first in both) so the score is in [0, 1].
    """
    entries = _entries(vector, keyword)
    best = 2.0 / (rrf_k + 1)
    for entry in entries.values():
        total = 0.0
        for rank in (entry.vector_rank, entry.keyword_rank):
            if rank is not None:
                total += 1.0 / (rrf_k + rank)
        entry.fused = total / best
    return _ranked(entries, k)


def weighted_fusion(
    vector: Sequence[Ranked],
    keyword: Sequence[Ranked],
    *,
    k: int,
    alpha: float = 0.5,
) -> list[FusedHit]:
    """Fuse two rankings by ``alpha * minmax(vector) + (1 - alpha) * minmax(keyword)``."""
    entries = _entries(vector, keyword)
    for side, weight in ((vector, alpha), (keyword, 1.0 - alpha)):
        seen: set[str] = set()  # an id repeated in one list counts once, at its best rank
        for hit, normalised in zip(side, min_max([h.score for h in side]), strict=True):
            if hit.id not in seen:
                seen.add(hit.id)
                entries[hit.id].fused += weight * normalised
    return _ranked(entries, k)


def fuse(
    vector: Sequence[Ranked],
    keyword: Sequence[Ranked],
    *,
    k: int,
    options: SearchOptions,
) -> list[FusedHit]:
    """The top ``k`` by ``options``: one side alone (``mode``), or both fused (``fusion``).

    For a single side, the score is that side's own: the store's [0, 1] score for
    ``vector``, and for ``keyword`` BM25 min-max normalised over the results (the raw BM25
    score stays in :attr:`FusedHit.keyword_score`).
    """
    if options.mode == "vector":
        return _single(vector, k, True)
    if options.mode == "keyword":
        return _single(keyword, k, False)
    if options.fusion == "weighted":
        return weighted_fusion(vector, keyword, k=k, alpha=options.alpha)
    return reciprocal_rank_fusion(vector, keyword, k=k, rrf_k=options.rrf_k)


def _single(hits: Sequence[Ranked], k: int, is_vector: bool) -> list[FusedHit]:
    scores = [h.score for h in hits] if is_vector else min_max([h.score for h in hits])
    results: list[FusedHit] = []
    seen: set[str] = set()
    for rank, (hit, score) in enumerate(zip(hits, scores, strict=True), start=1):
        if hit.id in seen:
            continue
        seen.add(hit.id)
        results.append(
            FusedHit(
                id=hit.id,
                score=min(1.0, max(0.0, score)),
                document=hit.document or "",
                metadata=dict(hit.metadata),
                vector_score=hit.score if is_vector else None,
                keyword_score=None if is_vector else hit.score,
                vector_rank=rank if is_vector else None,
                keyword_rank=None if is_vector else rank,
            )
        )
        if len(results) == k:
            break
    return results
