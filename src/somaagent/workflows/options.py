"""The engine's options as plain values: the gateway's app factory fills them from its one
``Settings`` class (``SOMA_WORKFLOW_*``); tests and benchmarks build them directly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class WorkflowOptions:
    """How the gateway runs durable workflows; the app factory fills these from the gateway's
    ``Settings`` (``SOMA_WORKFLOW_*``).

    Attributes:
        enabled: start the engine with the gateway (``/v1/workflows`` answers 503 when off).
        concurrency: runs this process executes at once.
        executor_id: this process's name among several on PostgreSQL (default: host, pid and a
            random suffix; ``local`` on SQLite).
        polling_interval_s: how often the queue and event streams are polled.
        maintenance_interval_s: how often gauges refresh and dead processes are looked for.
        max_recovery_attempts: recoveries of one run before it is given up as failed.
        ingest_root: the folder whose files ``document_ingest`` may read by path (``paths``);
            ``None``: no server-side files are read.
    """

    enabled: bool = True
    concurrency: int = 4
    executor_id: str | None = None
    polling_interval_s: float = 0.25
    maintenance_interval_s: float = 5.0
    max_recovery_attempts: int = 20
    ingest_root: Path | None = None
