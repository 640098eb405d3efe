"""Embedding models behind one contract; pick one with :func:`create_embedder`."""

from __future__ import annotations

from somaagent.memory.embeddings.base import Embedder, InputType, Vectors
from somaagent.memory.embeddings.cache import CachedEmbedder
from somaagent.memory.embeddings.registry import create_embedder

__all__ = ["CachedEmbedder", "Embedder", "InputType", "Vectors", "create_embedder"]
