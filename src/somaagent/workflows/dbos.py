"""The :class:`WorkflowEngine` on DBOS Transact, inside the gateway process.

* System database: SQLite or PostgreSQL, chosen and launched by :mod:`._launch`.
* Every run goes through one DBOS queue (``somaagent-workflows``) with a per-process concurrency
  limit, so a run is ``queued`` until a process picks it and any process may pick it.
* The application version is SomaAgent's ``__version__``: DBOS resumes only runs of its own
  version, so a run left PENDING by another version is listed as ``stranded`` and counted in
  ``soma_workflow_pending_other_versions``, never resumed silently with changed code.
* The run's tenant is DBOS's ``authenticated_user``; who started it is an attribute.
* On PostgreSQL each process has its own executor id and :mod:`.takeover` recovers the runs of a
  process that died; on SQLite the executor id is fixed (``local``) and DBOS's own recovery at
  launch resumes the runs a crash interrupted.

:class:`DBOSEngine` ties the parts: its lifecycle (launch, maintenance and takeover, close) lives
here; DBOS's settings and system database are :mod:`._launch`, the commands that change runs
(start, cancel, resume, fork) :mod:`._commands`, and reading runs :mod:`._queries`. DBOS is one
instance per process, so one engine runs per process.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dbos._dbos as dbos_core
import sqlalchemy as sa
from dbos import DBOS

from somaagent import types
from somaagent.errors import ConfigurationError
from somaagent.types.workflows import RunStatus, WorkflowEvent, WorkflowRun, WorkflowStep
from somaagent.workflows import _commands, _launch, _queries, _runtime
from somaagent.workflows import _convert as conv
from somaagent.workflows._launch import QUEUE, EngineConfig, conv_url, system_database_url
from somaagent.workflows._queries import MAX_LIST
from somaagent.workflows.engine import WorkflowEngine, WorkflowRegistry
from somaagent.workflows.metrics import WorkflowMetrics
from somaagent.workflows.takeover import ExecutorLiveness

if TYPE_CHECKING:
    from somaagent.workflows.retention import UploadRetention

__all__ = [
    "MAX_LIST",
    "QUEUE",
    "DBOSEngine",
    "EngineConfig",
    "conv_url",
    "system_database_url",
]

log = logging.getLogger("somaagent.workflows")


class DBOSEngine(WorkflowEngine):
    """Workflows on DBOS. Call :meth:`open` inside the running event loop, :meth:`aclose` at
    shutdown; ``services`` are handed to workflow functions as ``ctx.services``."""

    def __init__(
        self,
        registry: WorkflowRegistry,
        config: EngineConfig,
        *,
        services: Mapping[str, Any] | None = None,
        metrics: WorkflowMetrics | None = None,
    ) -> None:
        self.registry = registry
        self.config = config
        self.services: Mapping[str, Any] = services or {}
        self.metrics = metrics or WorkflowMetrics()
        self.app_version = config.app_version
        self.executor_id = config.resolved_executor_id()
        self._liveness: ExecutorLiveness | None = None
        self._maintenance: asyncio.Task[None] | None = None
        self._opened = False
        self._opening = asyncio.Lock()
        self._watch: asyncio.Task[None] | None = None
        self._sqlite_engine: sa.Engine | None = None
        self.upload_retention: UploadRetention | None = None
        """Deletes uploads and sweeps expired ones (set by ``open_engine``)."""
        self._background: builtins.list[asyncio.Task[None]] = []

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """Whether DBOS runs in this process (launched now or on first use)."""
        return self._opened

    async def may_hold_runs(self) -> bool:
        """Whether the system database may hold runs (so DBOS must launch to recover them).

        A SQLite workflow file or a PostgreSQL ``dbos`` schema that does not exist yet holds
        none. When PostgreSQL cannot be asked, the answer is yes, so the launch that follows
        fails with a clear error at start.
        """
        url = self.config.system_database_url
        if not self.config.is_postgres:
            return Path(url.split(":///", 1)[-1]).exists()
        return await asyncio.to_thread(_launch.schema_exists, url)

    async def open_if_needed(self) -> None:
        """Launch now when there may be runs to recover, else on first use.

        DBOS's migrations and threads then cost nothing to a gateway that never runs a
        workflow. On PostgreSQL a waiting process also launches as soon as another process
        has made the schema, so that it shares the queue and can take over runs.
        """
        if await self.may_hold_runs():
            await self.ensure_open()
        elif self.config.is_postgres:
            self._watch = asyncio.create_task(self._watch_schema(), name="workflow-schema-watch")

    async def _watch_schema(self) -> None:
        while not self._opened:
            await asyncio.sleep(self.config.maintenance_interval_s)
            try:
                if await self.may_hold_runs():
                    await self.ensure_open()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("the workflow engine could not start yet", exc_info=True)

    async def ensure_open(self) -> None:
        """Launch DBOS unless it runs already (on the calling loop, which must be the app's)."""
        if self._opened:
            return
        async with self._opening:
            if not self._opened:
                await self.open()

    async def open(self) -> None:
        """Launch DBOS in this event loop: recover interrupted runs, start the queue."""
        if dbos_core._dbos_global_instance is not None:
            raise ConfigurationError(
                "a workflow engine already runs in this process (DBOS allows one per process)"
            )
        for name in self.registry.types:
            _runtime.register_dbos_workflow(name, self.config.max_recovery_attempts)
        dbos_config = _launch.dbos_config(
            self.config, app_version=self.app_version, executor_id=self.executor_id
        )
        if not self.config.is_postgres:
            self._sqlite_engine = _launch.sqlite_engine(self.config.system_database_url)
            dbos_config["system_database_engine"] = self._sqlite_engine
        _runtime.set_active(self)
        try:
            if self.config.is_postgres:
                self._liveness = ExecutorLiveness(self.config.system_database_url, self.executor_id)
                await asyncio.to_thread(self._liveness.hold)
            await _launch.launch(dbos_config, self.config)
        except Exception as exc:
            await self._teardown()
            raise ConfigurationError(
                "the workflow engine could not start on "
                f"{_launch.redacted(self.config.system_database_url)}: {exc}"
            ) from exc
        self._opened = True
        for name in self.registry.types:
            self.metrics.type_seen(name)
        self._maintenance = asyncio.create_task(self._maintain(), name="workflow-maintenance")

    def start_background(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run housekeeping (the upload sweep) on this loop until :meth:`aclose`."""
        self._background.append(asyncio.create_task(work, name=name))

    async def aclose(self) -> None:
        """Stop this process's part; unfinished runs stay PENDING for the next start."""
        for task in self._background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._background.clear()
        if self._watch is not None and self._watch is not asyncio.current_task():
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
            self._maintenance = None
        await self._teardown()

    async def _teardown(self) -> None:
        self._opened = False
        if self._liveness is not None:
            self._liveness.close()
            self._liveness = None
        if _runtime._active is self:
            DBOS.destroy()
            _runtime.set_active(None)
            if self._sqlite_engine is not None:
                self._sqlite_engine.dispose()
                self._sqlite_engine = None
            # DBOS made its thread pool the loop's default executor and has just shut it down;
            # the rest of the app's shutdown (and any later to_thread) needs a working one.
            asyncio.get_running_loop().set_default_executor(
                ThreadPoolExecutor(thread_name_prefix="asyncio")
            )

    async def _maintain(self) -> None:
        while True:
            try:
                await self.maintenance_pass()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("workflow maintenance pass failed", exc_info=True)
            await asyncio.sleep(self.config.maintenance_interval_s)

    async def maintenance_pass(self) -> list[str]:
        """Refresh the gauges; on PostgreSQL recover dead executors' runs (their ids)."""
        queued = await DBOS.list_workflows_async(
            status="ENQUEUED", queue_name=QUEUE, load_input=False, load_output=False
        )
        self.metrics.queue_depth.set(len(queued))
        pending = await DBOS.list_workflows_async(
            status="PENDING", load_input=False, load_output=False
        )
        mine = [p for p in pending if p.name.startswith(conv.WORKFLOW_PREFIX)]
        others = [p for p in mine if p.app_version != self.app_version]
        self.metrics.pending_other_versions.set(len(others))
        if self._liveness is None:
            return []
        suspects = {
            p.executor_id
            for p in mine
            if p.app_version == self.app_version and p.executor_id not in (None, self.executor_id)
        }
        taken: list[str] = []
        for executor in sorted(e for e in suspects if e):
            if not await asyncio.to_thread(self._liveness.try_claim, executor):
                continue
            try:
                handles = await asyncio.to_thread(DBOS._recover_pending_workflows, [executor])
                log.warning(
                    "executor %s is gone; %d of its runs are back in the queue",
                    executor,
                    len(handles),
                )
                taken.append(executor)
            finally:
                await asyncio.to_thread(self._liveness.release, executor)
        return taken

    # -- runs: changes in :mod:`._commands`, reads in :mod:`._queries` -----------------------

    async def start(
        self,
        tenant: str,
        type: str,
        input: Mapping[str, Any],
        *,
        id: str | None = None,
        started_by: str | None = None,
    ) -> WorkflowRun:
        return await _commands.start(self, tenant, type, input, id=id, started_by=started_by)

    async def get(self, tenant: str, run_id: str) -> WorkflowRun:
        return await _queries.get_run(self, tenant, run_id)

    async def list(
        self,
        tenant: str,
        *,
        type: str | None = None,
        status: RunStatus | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> types.Page[WorkflowRun]:
        return await _queries.list_runs(
            self,
            tenant,
            type=type,
            status=status,
            created_after=created_after,
            created_before=created_before,
            limit=limit,
            cursor=cursor,
        )

    async def steps(self, tenant: str, run_id: str) -> builtins.list[WorkflowStep]:
        return await _queries.run_steps(self, tenant, run_id)

    async def step_values(
        self, tenant: str, run_id: str, prefix: str
    ) -> builtins.list[dict[str, Any]]:
        """The recorded results of a run's steps named ``prefix...``, in order (errors too)."""
        return await _queries.step_values(self, tenant, run_id, prefix)

    async def cancel(self, tenant: str, run_id: str) -> WorkflowRun:
        return await _commands.cancel(self, tenant, run_id)

    async def resume(self, tenant: str, run_id: str) -> WorkflowRun:
        """Resume a cancelled run, or one given up after too many recoveries.

        A failed run (engine status ``ERROR``) cannot be: DBOS 3.4's ``resume_workflow``
        leaves ``SUCCESS`` and ``ERROR`` runs as they are, and the failed step's error is
        checkpointed, so running the run again would replay the failure. The 409 names the
        step to fork from instead.
        """
        return await _commands.resume(self, tenant, run_id)

    async def fork(self, tenant: str, run_id: str, from_step: int) -> WorkflowRun:
        return await _commands.fork(self, tenant, run_id, from_step)

    def events(
        self, tenant: str, run_id: str, *, after_seq: int = -1, follow: bool = True
    ) -> AsyncIterator[WorkflowEvent]:
        return _queries.run_events(self, tenant, run_id, after_seq=after_seq, follow=follow)
