"""The ``x-soma-*`` response headers, in one place: which model answered, why, and what the
call cost (formatted by :func:`somaagent.llm.cost.format_usd`, the same digits on every route).
"""

from __future__ import annotations

from somaagent.chat.events import Route
from somaagent.llm.cost import format_usd

__all__ = ["cost_header", "route_headers"]


def cost_header(cost_usd: float) -> dict[str, str]:
    """``x-soma-cost-usd``."""
    return {"x-soma-cost-usd": format_usd(cost_usd)}


def route_headers(route: Route | None) -> dict[str, str]:
    """``x-soma-model``, ``x-soma-route-reason`` and (when known) ``x-soma-cost-usd``; none for
    a replayed answer."""
    if route is None:
        return {}
    headers = {
        "x-soma-model": route.model,
        "x-soma-route-reason": route.reason.encode("ascii", "replace").decode()[:500],
    }
    if route.cost_usd is not None:
        headers.update(cost_header(route.cost_usd))
    return headers
