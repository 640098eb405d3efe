"""Wiring for the router: its prompt embedder and the route-feedback service.

The router (``llm``) may not import ``memory``; the app factory hands it the product's local
all-MiniLM-L6-v2 (what its quality heads were trained on) as a plain function, when the
gateway's embedder is the local one. The model loads on the first routed prompt (and is
cached as an ONNX file in the user's data directory, shared by every gateway on the machine).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from somaagent.gateway.settings import Settings
from somaagent.llm.feedback import RouteFeedback
from somaagent.llm.learned.embedding import EMBED_TOKENS
from somaagent.llm.registry import ModelRegistry
from somaagent.llm.router import Router

__all__ = ["routing_services"]


def _local_embedder() -> Any:
    from somaagent.memory.embeddings.local import LocalEmbedder

    # one prompt per decision: one thread is enough; the heads were trained on the first
    # EMBED_TOKENS tokens
    embedder = LocalEmbedder(threads=1, max_tokens=EMBED_TOKENS)

    def embed(texts: Sequence[str]) -> Any:
        return embedder.embed_sync(texts)

    return embed


async def routing_services(
    settings: Settings, registry: ModelRegistry, sessions: async_sessionmaker[AsyncSession]
) -> tuple[Router, RouteFeedback]:
    """The gateway's router (warmed up) and its feedback service (tenant heads loaded)."""
    embedder = _local_embedder() if settings.embedding_model == "local" else None
    router = Router(registry, fallback_chain=settings.fallback_chain or None, embedder=embedder)
    feedback = RouteFeedback(sessions, router)
    await feedback.load()
    router.quality.tenant_heads = feedback.heads_for
    router.warm_up()
    return router, feedback
