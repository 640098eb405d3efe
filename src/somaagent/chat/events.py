"""What a chat turn tells its caller: the route it took and, when streamed, its events.

The gateway turns a :class:`Route` into its ``x-soma-*`` headers and each :class:`TurnEvent`
into a Server-Sent Event; nothing here knows HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from somaagent.llm.policy import RoutingDecision
from somaagent.llm.specs import ModelSpec

__all__ = ["Route", "TurnEvent"]


@dataclass(frozen=True, slots=True)
class Route:
    """Which model answered a turn, why, and (when known) what the call cost."""

    model: str
    reason: str
    cost_usd: float | None = None

    @classmethod
    def of(cls, decision: RoutingDecision, spec: ModelSpec, cost_usd: float | None) -> Route:
        """The route of a call that ``spec`` answered under ``decision``."""
        return cls(model=spec.name, reason=decision.reason, cost_usd=cost_usd)


@dataclass(frozen=True, slots=True)
class TurnEvent:
    """One event of a streamed turn, in order.

    Attributes:
        name: ``message.created``, ``message.delta``, ``message.completed`` or ``error``.
        data: the event's JSON payload (``None`` for ``error``).
        error: what failed, for ``error`` (the stored turn is already marked failed).
    """

    name: str
    data: dict[str, Any] | None = None
    error: Exception | None = None
