"""SLOs: specs, error-budget maths, the Prometheus tracker, rule and dashboard generation.

::

    from somaagent.sre.slo import SLOTracker, default_specs

    with SLOTracker("http://127.0.0.1:9090", default_specs()) as tracker:
        statuses = tracker.status()                       # list[SLOStatus]
        burned = tracker.burn("gateway-error-rate", start, end)  # BudgetBurn
"""

from __future__ import annotations

from somaagent.sre.slo.maths import BURN_WINDOWS, BurnWindow, Status
from somaagent.sre.slo.prometheus import (
    AsyncPrometheusClient,
    PrometheusClient,
    PrometheusError,
    PrometheusQueryError,
    PrometheusResponseError,
    PrometheusUnreachableError,
)
from somaagent.sre.slo.spec import (
    LatencySLI,
    RatioSLI,
    SLOSpec,
    UptimeSLI,
    default_specs,
    load_specs,
    parse_specs,
)
from somaagent.sre.slo.status import Budget, BudgetBurn, BurnRate, SLOStatus, TrendPoint
from somaagent.sre.slo.tracker import AsyncSLOTracker, SLOTracker

__all__ = [
    "BURN_WINDOWS",
    "AsyncPrometheusClient",
    "AsyncSLOTracker",
    "Budget",
    "BudgetBurn",
    "BurnRate",
    "BurnWindow",
    "LatencySLI",
    "PrometheusClient",
    "PrometheusError",
    "PrometheusQueryError",
    "PrometheusResponseError",
    "PrometheusUnreachableError",
    "RatioSLI",
    "SLOSpec",
    "SLOStatus",
    "SLOTracker",
    "Status",
    "TrendPoint",
    "UptimeSLI",
    "default_specs",
    "load_specs",
    "parse_specs",
]
