"""The gateway's fault points in place: wrappers that pass each dependency call through them.

:class:`~somaagent.sre.chaos.points.FaultPoints` holds the faults; here the vector store, the
embedding model and every chat model adapter are wrapped (a store that wraps a store, a model
that wraps a model), so a fault raises each dependency's own error type and the gateway
answers as it would to the real failure: a vector store that is down is a 503
``vector-store-unavailable``, a model that is down is tried down the fallback chain.

Fault points are on by default in ``local`` mode and off in ``production`` unless
``SOMA_FAULT_INJECTION=true``; when off nothing is wrapped, so they cost nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import numpy as np

from somaagent.chat.providers import ProviderPool
from somaagent.errors import (
    EmbeddingError,
    ProviderConnectionError,
    ProviderTimeoutError,
    VectorStoreError,
)
from somaagent.gateway.metrics import Metrics
from somaagent.llm.base import ChatRequest, Completion, Model, StreamChunk
from somaagent.memory.embeddings.base import Embedder, InputType, Vectors
from somaagent.memory.filters import FilterInput
from somaagent.memory.service import MemoryService
from somaagent.memory.stores.base import (
    CollectionInfo,
    MetadataValue,
    Metric,
    SearchHit,
    VectorRecord,
    VectorStore,
)
from somaagent.sre.chaos.points import FaultPoints

__all__ = [
    "FaultPointEmbedder",
    "FaultPointModel",
    "FaultPointStore",
    "fault_points_for",
    "install",
]


class FaultPointStore(VectorStore):
    """A vector store whose every call passes through the ``vector-store`` fault point."""

    def __init__(self, inner: VectorStore, points: FaultPoints) -> None:
        self.inner = inner
        self.points = points
        self.backend = inner.backend

    async def _hit(self) -> None:
        def failed(message: str) -> VectorStoreError:
            return VectorStoreError(message, backend=self.backend)

        await self.points.hit("vector-store", unavailable=failed, timed_out=failed)

    async def create_collection(
        self,
        name: str,
        *,
        dimension: int,
        metric: Metric = "cosine",
        metadata: Mapping[str, MetadataValue] | None = None,
        exist_ok: bool = False,
    ) -> CollectionInfo:
        await self._hit()
        return await self.inner.create_collection(
            name, dimension=dimension, metric=metric, metadata=metadata, exist_ok=exist_ok
        )

    async def delete_collection(self, name: str) -> None:
        await self._hit()
        await self.inner.delete_collection(name)

    async def list_collections(self) -> list[CollectionInfo]:
        await self._hit()
        return await self.inner.list_collections()

    async def get_collection(self, name: str) -> CollectionInfo:
        await self._hit()
        return await self.inner.get_collection(name)

    async def upsert(self, collection: str, records: Sequence[VectorRecord]) -> None:
        await self._hit()
        await self.inner.upsert(collection, records)

    async def get(self, collection: str, ids: Sequence[str]) -> list[VectorRecord]:
        await self._hit()
        return await self.inner.get(collection, ids)

    async def delete(
        self,
        collection: str,
        *,
        ids: Sequence[str] | None = None,
        where: FilterInput = None,
    ) -> int:
        await self._hit()
        return await self.inner.delete(collection, ids=ids, where=where)

    async def search(
        self,
        collection: str,
        vector: Sequence[float] | np.ndarray[Any, np.dtype[Any]],
        *,
        k: int = 10,
        where: FilterInput = None,
    ) -> list[SearchHit]:
        await self._hit()
        return await self.inner.search(collection, vector, k=k, where=where)

    async def count(self, collection: str, *, where: FilterInput = None) -> int:
        await self._hit()
        return await self.inner.count(collection, where=where)

    async def aclose(self) -> None:
        await self.inner.aclose()


class FaultPointEmbedder(Embedder):
    """An embedder whose every call passes through the ``embedder`` fault point."""

    def __init__(self, inner: Embedder, points: FaultPoints) -> None:
        self.inner = inner
        self.points = points
        self.name = inner.name
        self.dimension = inner.dimension
        self.provider = inner.provider
        self.input_types_differ = inner.input_types_differ

    async def embed(self, texts: Sequence[str], *, input_type: InputType = "document") -> Vectors:
        def failed(message: str) -> EmbeddingError:
            return EmbeddingError(message, provider=self.provider)

        await self.points.hit("embedder", unavailable=failed, timed_out=failed)
        return await self.inner.embed(texts, input_type=input_type)

    async def aclose(self) -> None:
        await self.inner.aclose()


class FaultPointModel(Model):
    """A chat model whose every call passes through the ``model`` fault point.

    A fault raises the retryable errors a model server that is down or cut off would
    (connection refused, timed out), so the fallback chain and its circuit breakers see them.
    """

    def __init__(self, inner: Model, points: FaultPoints) -> None:
        self.inner = inner
        self.points = points
        self.provider = inner.provider

    async def _hit(self) -> None:
        def refused(message: str) -> ProviderConnectionError:
            return ProviderConnectionError(message, provider=self.provider)

        def timed_out(message: str) -> ProviderTimeoutError:
            return ProviderTimeoutError(message, provider=self.provider)

        await self.points.hit("model", unavailable=refused, timed_out=timed_out)

    async def complete(self, request: ChatRequest) -> Completion:
        await self._hit()
        return await self.inner.complete(request)

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        await self._hit()
        async for chunk in self.inner.stream(request):
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


def fault_points_for(metrics: Metrics) -> FaultPoints:
    """Fault points that report to the gateway's metrics."""
    points = FaultPoints(on_hit=metrics.fault_acted, on_change=metrics.fault_changed)
    for name in points.names():
        metrics.fault_changed(name, False)  # every point shows, at 0, from the first scrape
    return points


def install(points: FaultPoints, *, memory: MemoryService, pool: ProviderPool) -> None:
    """Route the gateway's memory and model calls through ``points``."""
    pipeline = memory.pipeline
    pipeline.store = FaultPointStore(pipeline.store, points)
    embedder = FaultPointEmbedder(pipeline.embedder, points)
    if memory.embedders.default is pipeline.embedder:
        memory.embedders.default = embedder
    pipeline.embedder = embedder
    pool.wrap = lambda model: FaultPointModel(model, points)
