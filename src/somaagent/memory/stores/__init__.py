"""Vector stores behind one contract; open one with :func:`create_store`."""

from __future__ import annotations

from somaagent.memory.stores.base import (
    CollectionInfo,
    MetadataValue,
    Metric,
    SearchHit,
    VectorRecord,
    VectorStore,
)
from somaagent.memory.stores.registry import create_store

__all__ = [
    "CollectionInfo",
    "MetadataValue",
    "Metric",
    "SearchHit",
    "VectorRecord",
    "VectorStore",
    "create_store",
]
