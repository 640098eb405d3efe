"""How the gateway's memory is configured and built: settings, the default pipeline, and the
embedding models ``POST /v1/embeddings`` can serve.

The defaults need no server: the local all-MiniLM-L6-v2 (cached per text under the data
directory), ChromaDB under ``SOMA_DATA_DIR/vectors`` and the FTS5 keyword index under
``SOMA_DATA_DIR/keyword``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from somaagent.errors import ValidationError
from somaagent.gateway.settings import Settings
from somaagent.memory.chunking import Chunker
from somaagent.memory.embeddings.base import Embedder, create_embedder
from somaagent.memory.embeddings.cache import CachedEmbedder
from somaagent.memory.keyword import KeywordIndex
from somaagent.memory.rag import RAGPipeline
from somaagent.memory.stores.base import create_store

__all__ = ["EmbedderPool", "MemorySettings", "build_pipeline", "default_store_url"]

_LOCAL_NAMES = frozenset({"local", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"})


class MemorySettings(BaseSettings):
    """Memory settings; environment variables use the ``SOMA_`` prefix like the gateway's.

    Attributes:
        embedding_model: the embedder spec for collections (``local``,
            ``openai:text-embedding-3-small``, ``cohere:embed-english-v3.0``).
        vector_store_url: the vector store (``create_store`` URL); default ChromaDB under
            ``data_dir/vectors``.
        embedding_cache: keep embeddings per text under ``data_dir/embeddings``.
        memory_chunk_size: tokens per chunk.
        memory_chunk_overlap: tokens repeated between a section's chunks.
        memory_max_document_chars: the longest document (or uploaded file) accepted.
        memory_index_messages: index conversation messages for ``search_conversations``.
    """

    model_config = SettingsConfigDict(env_prefix="SOMA_", env_file=".env", extra="ignore")

    embedding_model: str = "local"
    vector_store_url: str | None = None
    embedding_cache: bool = True
    memory_chunk_size: int = Field(default=256, ge=16, le=8192)
    memory_chunk_overlap: int = Field(default=32, ge=0, le=1024)
    memory_max_document_chars: int = Field(default=2_000_000, ge=1)
    memory_index_messages: bool = True


def default_store_url(data_dir: Path) -> str:
    """``chroma:///<data_dir>/vectors``."""
    return "chroma://" + str((Path(data_dir) / "vectors").resolve())


def _options(spec: str, settings: Settings) -> dict[str, object]:
    options: dict[str, object] = {}
    if spec.startswith("openai:"):
        if settings.openai_api_key is not None:
            options["api_key"] = settings.openai_api_key.get_secret_value()
        if settings.openai_base_url:
            options["base_url"] = settings.openai_base_url
    return options


def make_embedder(
    spec: str, settings: Settings, *, cache: bool, dimensions: int | None = None
) -> Embedder:
    """The embedder ``spec`` names, with the gateway's keys, cached on disk if asked."""
    options = _options(spec, settings)
    if dimensions is not None:
        options["dimensions"] = dimensions
    embedder = create_embedder(spec, **options)
    return CachedEmbedder(embedder, data_dir=settings.data_dir) if cache else embedder


def build_pipeline(settings: Settings, memory: MemorySettings | None = None) -> RAGPipeline:
    """The gateway's RAG pipeline from its settings (models and stores load lazily)."""
    memory = memory or MemorySettings()
    embedder = make_embedder(memory.embedding_model, settings, cache=memory.embedding_cache)
    store = create_store(memory.vector_store_url or default_store_url(settings.data_dir))
    keyword = KeywordIndex(Path(settings.data_dir) / "keyword")
    chunker = Chunker(chunk_size=memory.memory_chunk_size, overlap=memory.memory_chunk_overlap)
    return RAGPipeline(embedder, store, keyword, chunker=chunker)


def _spec_for(model: str) -> str | None:
    lowered = model.strip().lower()
    if lowered in _LOCAL_NAMES:
        return "local"
    if ":" in lowered:
        return model.strip()
    if lowered.startswith("text-embedding-"):
        return "openai:" + model.strip()
    if lowered.startswith("embed-"):
        return "cohere:" + model.strip()
    return None


class EmbedderPool:
    """The embedders ``/v1/embeddings`` serves, by OpenAI-style model name, made on first use.

    ``all-MiniLM-L6-v2`` (or ``local``) is the collections' own local model; ``text-embedding-*``
    goes to OpenAI, ``embed-*`` to Cohere, and ``provider:model`` to that provider.
    """

    def __init__(self, settings: Settings | None, *, default: Embedder, default_spec: str) -> None:
        self.settings = settings
        self.default = default
        self.default_spec = default_spec
        self._made: dict[tuple[str, int | None], Embedder] = {}

    def get(self, model: str, *, dimensions: int | None = None) -> Embedder:
        """The embedder for ``model`` (with ``dimensions``, where the model supports it).

        Raises:
            ValidationError: an unknown model, or ``dimensions`` the model cannot give.
            ConfigurationError: the provider's key or extra is missing (a 503).
        """
        spec = _spec_for(model)
        if spec is None:
            raise ValidationError(
                f"unknown embedding model {model!r}: use all-MiniLM-L6-v2 (local), "
                "text-embedding-3-small / -3-large / ada-002 (OpenAI), embed-* (Cohere), "
                "or provider:model",
                errors=[{"loc": ["body", "model"], "msg": "unknown model", "type": "value_error"}],
            )
        supports_dimensions = spec.startswith("openai:text-embedding-3")
        if dimensions is not None and not supports_dimensions:
            raise ValidationError(
                f"model {model!r} does not take `dimensions` (only text-embedding-3-* does)",
                errors=[
                    {"loc": ["body", "dimensions"], "msg": "unsupported", "type": "value_error"}
                ],
            )
        if spec == self.default_spec and dimensions is None:
            return self.default
        key = (spec, dimensions)
        if key not in self._made:
            if self.settings is None:
                raise ValidationError(
                    f"this gateway serves only {self.default.name!r} embeddings",
                    errors=[
                        {"loc": ["body", "model"], "msg": "unavailable", "type": "value_error"}
                    ],
                )
            self._made[key] = make_embedder(spec, self.settings, cache=True, dimensions=dimensions)
        return self._made[key]

    async def aclose(self) -> None:
        """Close the embedders made here (not the default, which the pipeline owns)."""
        for embedder in self._made.values():
            await embedder.aclose()
        self._made.clear()
