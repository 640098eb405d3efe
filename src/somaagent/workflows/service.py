"""The gateway's one entry point: :func:`open_engine` builds and launches the engine, with
the upload retention (:mod:`.retention`) when an upload store is among its services."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from somaagent.workflows.builtin import builtin_registry
from somaagent.workflows.dbos import DBOSEngine, EngineConfig, system_database_url
from somaagent.workflows.engine import WorkflowRegistry
from somaagent.workflows.metrics import WorkflowMetrics
from somaagent.workflows.options import WorkflowOptions
from somaagent.workflows.ports import INGEST_ROOT, UPLOADS
from somaagent.workflows.retention import UploadRetention
from somaagent.workflows.uploads import UploadStore


async def open_engine(
    database_url: str,
    data_dir: Path,
    *,
    services: Mapping[str, Any],
    metrics_registry: CollectorRegistry | None = None,
    options: WorkflowOptions | None = None,
    registry: WorkflowRegistry | None = None,
) -> DBOSEngine | None:
    """The engine for a gateway on ``database_url`` (``None`` when turned off); launched now
    when its database may hold runs to recover, else on first use.

    Raises:
        ConfigurationError: the workflow database cannot be reached or used (the message
            names it, without its password).
    """
    options = options or WorkflowOptions()
    if not options.enabled:
        return None
    config = EngineConfig(
        system_database_url=system_database_url(database_url, data_dir),
        executor_id=options.executor_id,
        concurrency=options.concurrency,
        polling_interval_s=options.polling_interval_s,
        maintenance_interval_s=options.maintenance_interval_s,
        max_recovery_attempts=options.max_recovery_attempts,
    )
    engine = DBOSEngine(
        registry or builtin_registry(),
        config,
        services={**services, INGEST_ROOT: options.ingest_root},
        metrics=WorkflowMetrics(metrics_registry),
    )
    await engine.open_if_needed()
    store = services.get(UPLOADS)
    if isinstance(store, UploadStore):
        # deletes on request; with a time to live, sweeps expired uploads now and then on
        retention = UploadRetention(engine, store)
        engine.upload_retention = retention
        engine.start_background(retention.run_forever(), "workflow-upload-sweep")
    return engine
