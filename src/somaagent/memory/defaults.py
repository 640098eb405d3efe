"""The memory pipeline a server builds from plain configuration values.

The defaults need no server: the local all-MiniLM-L6-v2 (cached per text under the data
directory), ChromaDB under ``<data_dir>/vectors`` and the FTS5 keyword index under
``<data_dir>/keyword``. The gateway fills these arguments from its settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from somaagent.memory.chunking import Chunker
from somaagent.memory.embeddings.base import Embedder
from somaagent.memory.embeddings.cache import CachedEmbedder
from somaagent.memory.embeddings.registry import create_embedder
from somaagent.memory.keyword import KeywordIndex
from somaagent.memory.rag import RAGPipeline
from somaagent.memory.stores.registry import create_store

__all__ = ["EmbedderSource", "build_pipeline", "default_store_url"]


def default_store_url(data_dir: Path) -> str:
    """``chroma:///<data_dir>/vectors``."""
    return "chroma://" + str((Path(data_dir) / "vectors").resolve())


@dataclass(frozen=True, slots=True)
class EmbedderSource:
    """Makes embedders by spec with the server's keys, cached on disk under ``data_dir``.

    Attributes:
        data_dir: where the embedding cache lives (``<data_dir>/embeddings``).
        openai_api_key: the key for ``openai:`` specs (else the embedder's own fallback).
        openai_base_url: another root for OpenAI's API.
    """

    data_dir: Path
    openai_api_key: str | None = None
    openai_base_url: str | None = None

    def make(self, spec: str, *, cache: bool, dimensions: int | None = None) -> Embedder:
        """The embedder ``spec`` names (see :func:`create_embedder`), cached if asked."""
        options: dict[str, object] = {}
        if spec.startswith("openai:"):
            if self.openai_api_key is not None:
                options["api_key"] = self.openai_api_key
            if self.openai_base_url:
                options["base_url"] = self.openai_base_url
        if dimensions is not None:
            options["dimensions"] = dimensions
        embedder = create_embedder(spec, **options)
        return CachedEmbedder(embedder, data_dir=self.data_dir) if cache else embedder


def build_pipeline(
    source: EmbedderSource,
    *,
    embedding_model: str = "local",
    vector_store_url: str | None = None,
    embedding_cache: bool = True,
    chunk_size: int = 256,
    chunk_overlap: int = 32,
) -> RAGPipeline:
    """The RAG pipeline (models and stores load lazily, on first use).

    Args:
        source: makes the embedder; its ``data_dir`` holds the default store and index.
        embedding_model: the embedder spec (``local``, ``openai:<model>``, ``cohere:<model>``).
        vector_store_url: the vector store (:func:`create_store`); default ChromaDB under
            ``data_dir/vectors``.
        embedding_cache: keep embeddings per text on disk.
        chunk_size: tokens per chunk.
        chunk_overlap: tokens repeated between a section's chunks.
    """
    embedder = source.make(embedding_model, cache=embedding_cache)
    store = create_store(vector_store_url or default_store_url(source.data_dir))
    keyword = KeywordIndex(Path(source.data_dir) / "keyword")
    chunker = Chunker(chunk_size=chunk_size, overlap=chunk_overlap)
    return RAGPipeline(embedder, store, keyword, chunker=chunker)
