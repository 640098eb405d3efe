"""Memory: embedding models, vector stores behind one interface, the filter language, and the
keyword index, hybrid fusion, chunking and RAG pipeline built on them (see ``README.md``).

The contracts are re-exported here; back-ends load lazily through :func:`create_embedder` and
:func:`create_store`.
"""

from __future__ import annotations

from somaagent.memory.embeddings.base import Embedder
from somaagent.memory.embeddings.cache import CachedEmbedder
from somaagent.memory.embeddings.registry import create_embedder
from somaagent.memory.filters import Filter, matches, parse_filter
from somaagent.memory.stores.base import (
    CollectionInfo,
    Metric,
    SearchHit,
    VectorRecord,
    VectorStore,
)
from somaagent.memory.stores.registry import create_store

__all__ = [
    "CachedEmbedder",
    "CollectionInfo",
    "Embedder",
    "Filter",
    "Metric",
    "SearchHit",
    "VectorRecord",
    "VectorStore",
    "create_embedder",
    "create_store",
    "matches",
    "parse_filter",
]
