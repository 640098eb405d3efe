"""What one running gateway holds: settings, database, providers, metrics, limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from somaagent.accounts.keys import Principal
from somaagent.accounts.usage import UsageLedger
from somaagent.chat.completions import ChatCompletions
from somaagent.chat.conversations import ConversationService
from somaagent.chat.providers import ProviderPool
from somaagent.chat.turns import ChatTurns
from somaagent.gateway.metrics import Metrics
from somaagent.gateway.ratelimit import RateLimiter
from somaagent.gateway.settings import Settings
from somaagent.llm.feedback import RouteFeedback
from somaagent.llm.router import Router
from somaagent.memory.service import MemoryService
from somaagent.prompts.service import PromptService
from somaagent.sre.chaos.points import FaultPoints

if TYPE_CHECKING:  # imported by the engine's wiring only when it starts: DBOS is heavy
    from somaagent.workflows.dbos import DBOSEngine


@dataclass(slots=True)
class GatewayState:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    metrics: Metrics
    pool: ProviderPool
    rate_limiter: RateLimiter
    conversations: ConversationService
    prompts: PromptService
    memory: MemoryService
    router: Router
    usage: UsageLedger
    turns: ChatTurns
    completions: ChatCompletions
    faults: FaultPoints | None = None
    """The fault points, when fault injection is on (``local`` mode by default)."""
    key_cache: dict[str, tuple[Principal, float]] = field(default_factory=dict)
    workflows: DBOSEngine | None = None
    """The durable workflow engine (``None`` when ``SOMA_WORKFLOW_ENABLED`` is off)."""
    route_feedback: RouteFeedback | None = None
    """Tenant feedback on routed answers and tenant router training."""
