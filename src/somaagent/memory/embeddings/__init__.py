"""Embedding models behind one contract; pick one with :func:`create_embedder`."""

from __future__ import annotations

from somaagent.memory.embeddings.base import Embedder, InputType, Vectors, create_embedder
from somaagent.memory.embeddings.cache import CachedEmbedder

__all__ = ["CachedEmbedder", "Embedder", "InputType", "Vectors", "create_embedder"]
