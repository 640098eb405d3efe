"""Wiring for the router: its prompt embedder, the route-feedback service and, when the
operator turns it on, the sampled shadow evaluation (its judge is called through the gateway's
provider pool).

The router (``llm``) may not import ``memory``; the app factory hands it the product's local
all-MiniLM-L6-v2 (what its quality heads were trained on) as a plain function, when the
gateway's embedder is the local one. The model loads on the first routed prompt (and is
cached as an ONNX file in the user's data directory, shared by every gateway on the machine).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from somaagent.gateway.settings import Settings
from somaagent.llm.base import Model
from somaagent.llm.feedback import RouteFeedback
from somaagent.llm.learned.embedding import EMBED_GRAPH_OPTIMIZATION, EMBED_TOKENS
from somaagent.llm.registry import ModelRegistry
from somaagent.llm.router import Router
from somaagent.llm.shadow import ShadowConfig, ShadowJudge
from somaagent.llm.specs import ModelSpec

__all__ = ["routing_services"]

logger = logging.getLogger(__name__)


def _local_embedder() -> Any:
    from somaagent.memory.embeddings.local import LocalEmbedder

    # one prompt per decision: one thread is enough; the heads were trained on the first
    # EMBED_TOKENS tokens, embedded at this graph optimisation level
    embedder = LocalEmbedder(
        threads=1, max_tokens=EMBED_TOKENS, graph_optimization=EMBED_GRAPH_OPTIMIZATION
    )

    def embed(texts: Sequence[str]) -> Any:
        return embedder.embed_sync(texts)

    return embed


def _shadow(
    settings: Settings,
    registry: ModelRegistry,
    sessions: async_sessionmaker[AsyncSession],
    adapter_for: Callable[[ModelSpec], Awaitable[Model]] | None,
) -> ShadowJudge | None:
    if settings.route_shadow_rate <= 0 or adapter_for is None:
        return None
    judge = settings.route_shadow_judge or ""
    if registry.find(judge) is None:  # judges nothing until a registry reload brings it
        logger.error(
            "SOMA_ROUTE_SHADOW_JUDGE=%r is not a model of the registry (see GET /v1/models): "
            "no answer is judged",
            judge,
        )
    config = ShadowConfig(
        rate=settings.route_shadow_rate, judge=judge, budget_usd=settings.route_shadow_budget_usd
    )
    return ShadowJudge(sessions, registry, adapter_for, config)


async def routing_services(
    settings: Settings,
    registry: ModelRegistry,
    sessions: async_sessionmaker[AsyncSession],
    adapter_for: Callable[[ModelSpec], Awaitable[Model]] | None = None,
) -> tuple[Router, RouteFeedback]:
    """The gateway's router (warmed up) and its feedback service (tenant heads loaded; with
    the shadow evaluation when it is on and ``adapter_for`` can reach the judge)."""
    embedder = _local_embedder() if settings.embedding_model == "local" else None
    router = Router(registry, fallback_chain=settings.fallback_chain or None, embedder=embedder)
    feedback = RouteFeedback(sessions, router, _shadow(settings, registry, sessions, adapter_for))
    await feedback.load()
    router.quality.tenant_heads = feedback.heads_for
    router.warm_up()
    return router, feedback
