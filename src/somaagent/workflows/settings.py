"""Workflow engine settings: ``SOMA_WORKFLOW_*`` environment variables (or keyword arguments).

Like the memory settings, they sit beside the gateway's own so the workflow engine owns them.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class WorkflowSettings(BaseSettings):
    """How the gateway runs durable workflows.

    Attributes:
        enabled: start the engine with the gateway (``/v1/workflows`` answers 503 when off).
        concurrency: runs this process executes at once.
        executor_id: this process's name among several on PostgreSQL (default: host, pid and a
            random suffix; ``local`` on SQLite).
        polling_interval_s: how often the queue and event streams are polled.
        maintenance_interval_s: how often gauges refresh and dead processes are looked for.
        max_recovery_attempts: recoveries of one run before it is given up as failed.
    """

    model_config = SettingsConfigDict(env_prefix="SOMA_WORKFLOW_", extra="ignore")

    enabled: bool = True
    concurrency: int = Field(default=4, ge=1, le=256)
    executor_id: str | None = None
    polling_interval_s: float = Field(default=0.25, gt=0, le=10)
    maintenance_interval_s: float = Field(default=5.0, gt=0)
    max_recovery_attempts: int = Field(default=20, ge=1)
