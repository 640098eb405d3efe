"""The ``x-soma-*`` response headers, in one place: which model answered, why, and what the
call cost (formatted by :func:`somaagent.llm.cost.format_usd`, the same digits on every route).
"""

from __future__ import annotations

from somaagent.chat.events import Route
from somaagent.llm.cost import format_usd

__all__ = ["model_headers", "route_headers"]


def model_headers(model: str, cost_usd: float | None = None) -> dict[str, str]:
    """``x-soma-model`` and (when known) ``x-soma-cost-usd``."""
    headers = {"x-soma-model": model}
    if cost_usd is not None:
        headers["x-soma-cost-usd"] = format_usd(cost_usd)
    return headers


def route_headers(route: Route | None) -> dict[str, str]:
    """:func:`model_headers` and ``x-soma-route-reason``; none for a replayed answer."""
    if route is None:
        return {}
    headers = model_headers(route.model, route.cost_usd)
    headers["x-soma-route-reason"] = route.reason.encode("ascii", "replace").decode()[:500]
    return headers
