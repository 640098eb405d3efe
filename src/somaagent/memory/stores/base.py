"""The vector-store contract every back-end implements, and the one factory that picks them.

Contract (held by ``tests/memory/test_store_contract.py``, which runs over every back-end):

* **Collections** have a fixed ``dimension`` and ``metric`` (``cosine``, ``dot``,
  ``euclidean``). ``create_collection`` on an existing name raises
  :class:`~somaagent.errors.ConflictError` unless ``exist_ok`` (then the existing collection must
  have the same dimension and metric, else ``ConflictError``); every call naming an unknown
  collection raises :class:`~somaagent.errors.NotFoundError`. Names match
  ``[A-Za-z0-9][A-Za-z0-9_-]{0,62}`` (the subset every back-end accepts).
* **Upsert is idempotent**: records are keyed by their ``id``; the same id replaces the old
  record, never duplicates it. The whole batch is validated before anything is written: a wrong
  dimension, a non-finite component, a bad id or metadata value raises
  :class:`~somaagent.errors.ValidationError` naming the record (``loc = ["records", i, ...]``).
* **Filters** are written in :mod:`somaagent.memory.filters`' language and mean the same on
  every back-end (:func:`~somaagent.memory.filters.matches` is the reference). What a back-end
  cannot express is a ``ValidationError``; a filter is never silently ignored.
* **Scores** are comparable across back-ends: :class:`SearchHit` carries ``score`` in [0, 1]
  (higher is better), the raw ``distance`` in one convention per metric, and the ``metric``:

  ========= ============================ ================================
  metric    distance                     score
  ========= ============================ ================================
  cosine    1 − cos(a, b), in [0, 2]     1 − distance / 2 = (1 + cos) / 2
  dot       1 − a·b                      clip((1 + a·b) / 2, 0, 1)
  euclidean ‖a − b‖ (not squared)        1 / (1 + distance)
  ========= ============================ ================================

  For unit vectors (what the embedders return), cosine and dot give the same score.
* **Failures** of the back-end itself (down, timed out, refused) are
  :class:`~somaagent.errors.VectorStoreError` (a 503); foreign exceptions never leak.
* Blocking client libraries run in worker threads, off the event loop.

Back-ends are picked by URL through :func:`.registry.create_store` (which lists the schemes),
and third parties add their own through the ``somaagent.vector_stores`` entry-point group.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self, TypeAlias

import numpy as np

from somaagent.memory.filters import FilterInput

__all__ = [
    "CollectionInfo",
    "MetadataValue",
    "Metric",
    "SearchHit",
    "VectorRecord",
    "VectorStore",
]

Metric = Literal["cosine", "dot", "euclidean"]
MetadataValue: TypeAlias = str | int | float | bool


@dataclass(frozen=True)
class VectorRecord:
    """One stored vector with its optional document text and flat scalar metadata.

    Attributes:
        id: the caller's deterministic id (e.g. ``f"{doc_id}:{chunk_no}"``); 1–512 characters.
        vector: the embedding, of the collection's dimension.
        document: the text the vector was made from, when the caller keeps it in the store.
        metadata: flat ``str``/``int``/``float``/``bool`` values (no nesting, no ``None``).
    """

    id: str
    vector: Sequence[float] | np.ndarray[Any, np.dtype[Any]]
    document: str | None = None
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchHit:
    """One search result.

    Attributes:
        id: the record's id.
        score: similarity normalised to [0, 1], higher is better (see the module docstring).
        distance: the raw distance in the metric's convention.
        metric: the collection's metric.
        document: the stored document text, if any.
        metadata: the stored metadata.
    """

    id: str
    score: float
    distance: float
    metric: Metric
    document: str | None
    metadata: dict[str, MetadataValue]


@dataclass(frozen=True)
class CollectionInfo:
    """A collection's settings and stats.

    Attributes:
        name: the collection's name.
        dimension: the vectors' dimension.
        metric: the distance metric.
        count: how many records it holds now.
        metadata: the caller's metadata given at creation (flat scalars).
    """

    name: str
    dimension: int
    metric: Metric
    count: int
    metadata: dict[str, MetadataValue]


class VectorStore(abc.ABC):
    """A vector database behind SomaAgent's one interface (the contract is the module docstring).

    Use as an async context manager, or call :meth:`aclose` when done.
    """

    backend: str
    """The back-end id (``chroma``, ``qdrant``, ``pinecone``, ``pgvector``, ...)."""

    @abc.abstractmethod
    async def create_collection(
        self,
        name: str,
        *,
        dimension: int,
        metric: Metric = "cosine",
        metadata: Mapping[str, MetadataValue] | None = None,
        exist_ok: bool = False,
    ) -> CollectionInfo:
        """Create a collection (or, with ``exist_ok``, return the matching existing one)."""

    @abc.abstractmethod
    async def delete_collection(self, name: str) -> None:
        """Delete a collection and everything in it (``NotFoundError`` if unknown)."""

    @abc.abstractmethod
    async def list_collections(self) -> list[CollectionInfo]:
        """Every collection, sorted by name, with its count."""

    @abc.abstractmethod
    async def get_collection(self, name: str) -> CollectionInfo:
        """One collection's settings and stats."""

    @abc.abstractmethod
    async def upsert(self, collection: str, records: Sequence[VectorRecord]) -> None:
        """Insert or replace records by id, all validated before any is written."""

    @abc.abstractmethod
    async def get(self, collection: str, ids: Sequence[str]) -> list[VectorRecord]:
        """The stored records for ``ids``, in the order asked; unknown ids are left out."""

    @abc.abstractmethod
    async def delete(
        self,
        collection: str,
        *,
        ids: Sequence[str] | None = None,
        where: FilterInput = None,
    ) -> int:
        """Delete records by id, by filter, or both (a record must meet both).

        Returns:
            How many records were deleted.

        Raises:
            ValidationError: neither ``ids`` nor ``where`` was given (deleting everything is
                ``delete_collection``).
        """

    @abc.abstractmethod
    async def search(
        self,
        collection: str,
        vector: Sequence[float] | np.ndarray[Any, np.dtype[Any]],
        *,
        k: int = 10,
        where: FilterInput = None,
    ) -> list[SearchHit]:
        """The ``k`` nearest records that pass ``where``, best first."""

    @abc.abstractmethod
    async def count(self, collection: str, *, where: FilterInput = None) -> int:
        """How many records the collection holds (that pass ``where``)."""

    async def aclose(self) -> None:  # noqa: B027 - a no-op default, overridden where needed
        """Release connections and clients; the store is unusable afterwards."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} backend={self.backend!r}>"
