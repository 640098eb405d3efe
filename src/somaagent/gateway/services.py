"""The domain services' plain arguments, filled from the gateway's one settings class.

The services take constructor arguments, never :class:`~.settings.Settings`; these functions
are where the settings become those arguments (for the app factory and for tests that build a
service as the gateway would).
"""

from __future__ import annotations

from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from somaagent.chat.providers import ProviderConfig
from somaagent.gateway.settings import Settings
from somaagent.memory.defaults import EmbedderSource, build_pipeline
from somaagent.memory.embedder_pool import EmbedderPool
from somaagent.memory.service import MemoryService

__all__ = ["embedder_source", "memory_service", "provider_config"]


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def provider_config(settings: Settings) -> ProviderConfig:
    """The providers' keys and URLs."""
    return ProviderConfig(
        openai_api_key=_secret(settings.openai_api_key),
        openai_base_url=settings.openai_base_url,
        anthropic_api_key=_secret(settings.anthropic_api_key),
        anthropic_base_url=settings.anthropic_base_url,
        openai_compatible_api_key=_secret(settings.openai_compatible_api_key),
        openai_compatible_base_url=settings.openai_compatible_base_url,
        local_model_path=settings.local_model_path,
        default_model=settings.default_model,
        timeout_s=settings.provider_timeout_s,
    )


def embedder_source(settings: Settings) -> EmbedderSource:
    """Where embedders are made: the data directory's cache and OpenAI's key and URL."""
    return EmbedderSource(
        settings.data_dir,
        openai_api_key=_secret(settings.openai_api_key),
        openai_base_url=settings.openai_base_url,
    )


def memory_service(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> MemoryService:
    """The memory service as configured (models and stores load lazily, on first use)."""
    source = embedder_source(settings)
    pipeline = build_pipeline(
        source,
        embedding_model=settings.embedding_model,
        vector_store_url=settings.vector_store_url,
        embedding_cache=settings.embedding_cache,
        chunk_size=settings.memory_chunk_size,
        chunk_overlap=settings.memory_chunk_overlap,
    )
    return MemoryService(
        sessions,
        pipeline,
        embedders=EmbedderPool(
            source, default=pipeline.embedder, default_spec=settings.embedding_model
        ),
        max_document_chars=settings.memory_max_document_chars,
        index_messages=settings.memory_index_messages,
    )
