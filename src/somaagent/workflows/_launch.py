"""Launching DBOS for the engine: its system database, the engine's configuration, DBOS's
settings and the one queue every run goes through.

* System database: SQLite (``<data_dir>/workflows.sqlite``) for the embedded default, one
  process only; PostgreSQL (the gateway's own database, schema ``dbos``) when several gateway
  processes share the work.
* Every run goes through one DBOS queue (:data:`QUEUE`) with a per-process concurrency limit.
* On PostgreSQL each process has its own executor id (host, pid and a random suffix); on SQLite
  the executor id is fixed (``local``).
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from dbos import DBOS, DBOSConfig

from somaagent._version import __version__
from somaagent.errors import ConfigurationError

QUEUE = "somaagent-workflows"


def system_database_url(database_url: str, data_dir: Path) -> str:
    """DBOS's system database for the gateway's ``database_url``."""
    if database_url.startswith("sqlite"):
        return f"sqlite:///{Path(data_dir) / 'workflows.sqlite'}"
    if database_url.startswith("postgresql"):
        return conv_url(database_url)
    raise ConfigurationError(f"durable workflows need SQLite or PostgreSQL, not {database_url!r}")


def conv_url(database_url: str) -> str:
    url = sa.make_url(database_url).set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """How the engine runs.

    Attributes:
        system_database_url: ``sqlite:///path`` or a PostgreSQL URL.
        executor_id: this process's name in DBOS; default ``local`` on SQLite, else host, pid
            and a random suffix.
        concurrency: runs one process executes at once.
        polling_interval_s: how often the queue and event streams are polled.
        maintenance_interval_s: how often gauges refresh and dead processes are looked for.
        max_recovery_attempts: recoveries before a run that keeps crashing its process is
            given up (``failed``, engine status ``MAX_RECOVERY_ATTEMPTS_EXCEEDED``).
    """

    system_database_url: str
    app_version: str = __version__
    executor_id: str | None = None
    concurrency: int = 4
    polling_interval_s: float = 0.5
    maintenance_interval_s: float = 5.0
    max_recovery_attempts: int = 20

    @property
    def is_postgres(self) -> bool:
        return self.system_database_url.startswith("postgresql")

    def resolved_executor_id(self) -> str:
        if self.executor_id:
            return self.executor_id
        if not self.is_postgres:
            return "local"
        return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def redacted(url: str) -> str:
    return sa.make_url(url).render_as_string(hide_password=True)


def dbos_config(config: EngineConfig, *, app_version: str, executor_id: str) -> DBOSConfig:
    """DBOS's settings for this engine (the SQLite engine, when there is one, is added by the
    caller, which disposes of it)."""
    return {
        "name": "somaagent",
        "system_database_url": config.system_database_url,
        "application_version": app_version,
        "executor_id": executor_id,
        "log_level": "WARNING",
        "notification_listener_polling_interval_sec": config.polling_interval_s,
        "scheduler_polling_interval_sec": 3600.0,
    }


async def launch(dbos_settings: DBOSConfig, config: EngineConfig) -> None:
    """Create and launch DBOS, then register the queue (on the calling loop's thread)."""
    DBOS(config=dbos_settings)
    # Launched on the loop's own thread: DBOS then runs async workflows on this loop,
    # next to the services they call.
    DBOS.launch()
    await DBOS.register_queue_async(
        QUEUE,
        worker_concurrency=config.concurrency,
        polling_interval_sec=config.polling_interval_s,
        on_conflict="always_update",
    )


def sqlite_engine(url: str) -> sa.Engine:
    """DBOS's SQLite engine, in WAL mode with ``synchronous=NORMAL`` like the gateway's own.

    DBOS's default (rollback journal, a sync per commit) cost ~35 ms per step here, two commits
    each (bench/results/workflows.md). WAL with NORMAL loses no committed step when the process
    is killed; a power cut may lose the last commits, which recovery then runs again. Like
    DBOS's engine: IMMEDIATE transactions (one writer at a time) and a long busy timeout.
    """
    path = Path(url.split(":///", 1)[-1])
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, pool_size=20, max_overflow=0, pool_timeout=30)

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = "IMMEDIATE"
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")
        dbapi_connection.execute("PRAGMA busy_timeout=30000")
        dbapi_connection.execute("PRAGMA foreign_keys=ON")

    return engine


def schema_exists(url: str) -> bool:
    import psycopg

    from somaagent.workflows.takeover import conninfo

    try:
        with psycopg.connect(conninfo(url), connect_timeout=5) as connection:
            row = connection.execute("SELECT to_regclass('dbos.workflow_status')").fetchone()
    except psycopg.Error:
        return True
    return bool(row and row[0])
