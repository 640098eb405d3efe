"""The gateway's one entry point: :func:`open_engine` builds and launches the engine."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from somaagent.workflows.builtin import builtin_registry
from somaagent.workflows.dbos import DBOSEngine, EngineConfig, system_database_url
from somaagent.workflows.engine import WorkflowRegistry
from somaagent.workflows.metrics import WorkflowMetrics
from somaagent.workflows.settings import WorkflowSettings


async def open_engine(
    database_url: str,
    data_dir: Path,
    *,
    services: Mapping[str, Any],
    metrics_registry: CollectorRegistry | None = None,
    settings: WorkflowSettings | None = None,
    registry: WorkflowRegistry | None = None,
) -> DBOSEngine | None:
    """The engine for a gateway on ``database_url`` (``None`` when turned off); launched now
    when its database may hold runs to recover, else on first use.

    Raises:
        ConfigurationError: the workflow database cannot be reached or used (the message
            names it, without its password).
    """
    settings = settings or WorkflowSettings()
    if not settings.enabled:
        return None
    config = EngineConfig(
        system_database_url=system_database_url(database_url, data_dir),
        executor_id=settings.executor_id,
        concurrency=settings.concurrency,
        polling_interval_s=settings.polling_interval_s,
        maintenance_interval_s=settings.maintenance_interval_s,
        max_recovery_attempts=settings.max_recovery_attempts,
    )
    engine = DBOSEngine(
        registry or builtin_registry(),
        config,
        services=services,
        metrics=WorkflowMetrics(metrics_registry),
    )
    await engine.open_if_needed()
    return engine
