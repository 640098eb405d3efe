"""Stand-ins for the RAG tests: a fast deterministic embedder, an exact in-memory store, and a
wrapper that makes any store fail on demand.

The embedder is a real :class:`Embedder` (hashed bag of words, L2-normalised), so texts that
share words are near each other; the local MiniLM model is exercised by part A's tests and by
``bench/memory_retrieval.py``. The exact store follows the vector-store contract with the
reference filter matcher, for tests that must not depend on a particular back-end.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from somaagent.errors import ConflictError, EmbeddingError, NotFoundError, VectorStoreError
from somaagent.memory.embeddings.base import Embedder, InputType, Vectors
from somaagent.memory.filters import FilterInput, matches, parse_filter
from somaagent.memory.stores.base import (
    CollectionInfo,
    MetadataValue,
    Metric,
    SearchHit,
    VectorRecord,
    VectorStore,
)

_WORD = re.compile(r"[^\W_]+")


class HashEmbedder(Embedder):
    """Hashed bag-of-words vectors; a text containing ``poison`` fails as an item."""

    provider = "test"

    def __init__(self, dimension: int = 256, *, poison: str = "POISON") -> None:
        self.name = "hash-bow"
        self.dimension = dimension
        self.poison = poison
        self.calls = 0
        self.down = False

    async def embed(self, texts: Sequence[str], *, input_type: InputType = "document") -> Vectors:
        self.calls += 1
        if self.down:
            raise EmbeddingError("the test embedder is down", provider=self.provider)
        bad = [i for i, text in enumerate(texts) if self.poison in text]
        if bad:
            raise EmbeddingError(f"cannot embed items {bad}", provider=self.provider, items=bad)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                digest = hashlib.blake2b(word.encode(), digest_size=4).digest()
                out[row, int.from_bytes(digest, "little") % self.dimension] += 1.0
            if not out[row].any():
                out[row, 0] = 1.0
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out


@dataclass
class _Collection:
    dimension: int
    metric: Metric
    metadata: dict[str, MetadataValue]
    records: dict[str, VectorRecord] = field(default_factory=dict)


class ExactStore(VectorStore):
    """Exact cosine search over dicts, filters by the reference matcher."""

    backend = "exact"

    def __init__(self) -> None:
        self.collections: dict[str, _Collection] = {}

    def _get(self, name: str) -> _Collection:
        if name not in self.collections:
            raise NotFoundError(f"collection {name!r} not found")
        return self.collections[name]

    def _info(self, name: str) -> CollectionInfo:
        c = self._get(name)
        return CollectionInfo(name, c.dimension, c.metric, len(c.records), dict(c.metadata))

    async def create_collection(
        self,
        name: str,
        *,
        dimension: int,
        metric: Metric = "cosine",
        metadata: Mapping[str, MetadataValue] | None = None,
        exist_ok: bool = False,
    ) -> CollectionInfo:
        if name in self.collections:
            if not exist_ok or self.collections[name].dimension != dimension:
                raise ConflictError(f"collection {name!r} already exists")
            return self._info(name)
        self.collections[name] = _Collection(dimension, metric, dict(metadata or {}))
        return self._info(name)

    async def delete_collection(self, name: str) -> None:
        self._get(name)
        del self.collections[name]

    async def list_collections(self) -> list[CollectionInfo]:
        return [self._info(n) for n in sorted(self.collections)]

    async def get_collection(self, name: str) -> CollectionInfo:
        return self._info(name)

    async def upsert(self, collection: str, records: Sequence[VectorRecord]) -> None:
        c = self._get(collection)
        for record in records:
            if len(record.vector) != c.dimension:
                raise ValueError("wrong dimension")
        for record in records:
            c.records[record.id] = record

    async def get(self, collection: str, ids: Sequence[str]) -> list[VectorRecord]:
        c = self._get(collection)
        return [c.records[i] for i in ids if i in c.records]

    async def delete(
        self, collection: str, *, ids: Sequence[str] | None = None, where: FilterInput = None
    ) -> int:
        c = self._get(collection)
        node = parse_filter(where)
        chosen = [
            r.id
            for r in c.records.values()
            if (ids is None or r.id in ids) and matches(node, r.metadata)
        ]
        for record_id in chosen:
            del c.records[record_id]
        return len(chosen)

    async def search(
        self, collection: str, vector: Any, *, k: int = 10, where: FilterInput = None
    ) -> list[SearchHit]:
        c = self._get(collection)
        node = parse_filter(where)
        query = np.asarray(vector, dtype=np.float32)
        scored = []
        for record in c.records.values():
            if matches(node, record.metadata):
                cos = float(np.dot(query, np.asarray(record.vector, dtype=np.float32)))
                scored.append((cos, record.id, record))
        scored.sort(key=lambda t: (-t[0], t[1]))
        return [
            SearchHit(r.id, (1 + cos) / 2, 1 - cos, "cosine", r.document, dict(r.metadata))
            for cos, _, r in scored[:k]
        ]

    async def count(self, collection: str, *, where: FilterInput = None) -> int:
        node = parse_filter(where)
        return sum(1 for r in self._get(collection).records.values() if matches(node, r.metadata))


class FaultyStore(VectorStore):
    """Delegates to ``inner``; the operations named in ``failing`` raise ``VectorStoreError``.

    ``upsert_partially`` makes an upsert write its first half, then fail (a back-end that dies
    mid-write).
    """

    backend = "faulty"

    def __init__(self, inner: VectorStore) -> None:
        self.inner = inner
        self.failing: set[str] = set()
        self.upsert_partially = False
        self.upserted = 0  # records written by upsert so far

    def _check(self, operation: str) -> None:
        if operation in self.failing or "*" in self.failing:
            raise VectorStoreError(f"the store is down ({operation})", backend=self.backend)

    async def create_collection(self, name: str, **kwargs: Any) -> CollectionInfo:
        self._check("create_collection")
        return await self.inner.create_collection(name, **kwargs)

    async def delete_collection(self, name: str) -> None:
        self._check("delete_collection")
        await self.inner.delete_collection(name)

    async def list_collections(self) -> list[CollectionInfo]:
        self._check("list_collections")
        return await self.inner.list_collections()

    async def get_collection(self, name: str) -> CollectionInfo:
        self._check("get_collection")
        return await self.inner.get_collection(name)

    async def upsert(self, collection: str, records: Sequence[VectorRecord]) -> None:
        if self.upsert_partially:
            await self.inner.upsert(collection, records[: max(1, len(records) // 2)])
            raise VectorStoreError("the store died mid-write", backend=self.backend)
        self._check("upsert")
        await self.inner.upsert(collection, records)
        self.upserted += len(records)

    async def get(self, collection: str, ids: Sequence[str]) -> list[VectorRecord]:
        self._check("get")
        return await self.inner.get(collection, ids)

    async def delete(
        self, collection: str, *, ids: Sequence[str] | None = None, where: FilterInput = None
    ) -> int:
        self._check("delete")
        return await self.inner.delete(collection, ids=ids, where=where)

    async def search(
        self, collection: str, vector: Any, *, k: int = 10, where: FilterInput = None
    ) -> list[SearchHit]:
        self._check("search")
        return await self.inner.search(collection, vector, k=k, where=where)

    async def count(self, collection: str, *, where: FilterInput = None) -> int:
        self._check("count")
        return await self.inner.count(collection, where=where)
