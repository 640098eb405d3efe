"""The :class:`WorkflowEngine` on DBOS Transact, inside the gateway process.

* System database: SQLite (``<data_dir>/workflows.sqlite``) for the embedded default, one
  process only; PostgreSQL (the gateway's own database, schema ``dbos``) when several gateway
  processes share the work.
* Every run goes through one DBOS queue (``somaagent-workflows``) with a per-process concurrency
  limit, so a run is ``queued`` until a process picks it and any process may pick it.
* The application version is SomaAgent's ``__version__``: DBOS resumes only runs of its own
  version, so a run left PENDING by another version is listed as ``stranded`` and counted in
  ``soma_workflow_pending_other_versions``, never resumed silently with changed code.
* The run's tenant is DBOS's ``authenticated_user``; who started it is an attribute.
* On PostgreSQL each process has its own executor id and :mod:`.takeover` recovers the runs of a
  process that died; on SQLite the executor id is fixed (``local``) and DBOS's own recovery at
  launch resumes the runs a crash interrupted.

DBOS is one instance per process, so one engine runs per process.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dbos._dbos as dbos_core
import sqlalchemy as sa
from dbos import DBOS, DBOSConfig, DBOSContextSetAuth, SetWorkflowAttributes, SetWorkflowID
from dbos._error import DBOSConflictingWorkflowError, DBOSStreamTimeoutError

from somaagent import types
from somaagent._version import __version__
from somaagent.errors import ConfigurationError, ConflictError, NotFoundError
from somaagent.types.workflows import FINISHED, RunStatus, WorkflowEvent, WorkflowRun, WorkflowStep
from somaagent.workflows import _convert as conv
from somaagent.workflows import _runtime
from somaagent.workflows.engine import WorkflowEngine, WorkflowRegistry
from somaagent.workflows.metrics import WorkflowMetrics
from somaagent.workflows.takeover import ExecutorLiveness

if TYPE_CHECKING:
    from somaagent.workflows.retention import UploadRetention

log = logging.getLogger("somaagent.workflows")

QUEUE = "somaagent-workflows"
MAX_LIST = 200


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


def _redacted(url: str) -> str:
    return sa.make_url(url).render_as_string(hide_password=True)


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
        return await asyncio.to_thread(_schema_exists, url)

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
        dbos_config: DBOSConfig = {
            "name": "somaagent",
            "system_database_url": self.config.system_database_url,
            "application_version": self.app_version,
            "executor_id": self.executor_id,
            "log_level": "WARNING",
            "notification_listener_polling_interval_sec": self.config.polling_interval_s,
            "scheduler_polling_interval_sec": 3600.0,
        }
        if not self.config.is_postgres:
            self._sqlite_engine = _sqlite_engine(self.config.system_database_url)
            dbos_config["system_database_engine"] = self._sqlite_engine
        _runtime.set_active(self)
        try:
            if self.config.is_postgres:
                self._liveness = ExecutorLiveness(self.config.system_database_url, self.executor_id)
                await asyncio.to_thread(self._liveness.hold)
            DBOS(config=dbos_config)
            # Launched on the loop's own thread: DBOS then runs async workflows on this loop,
            # next to the services they call.
            DBOS.launch()
            await DBOS.register_queue_async(
                QUEUE,
                worker_concurrency=self.config.concurrency,
                polling_interval_sec=self.config.polling_interval_s,
                on_conflict="always_update",
            )
        except Exception as exc:
            await self._teardown()
            raise ConfigurationError(
                "the workflow engine could not start on "
                f"{_redacted(self.config.system_database_url)}: {exc}"
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

    # -- runs --------------------------------------------------------------------------------

    async def _status(self, tenant: str, run_id: str) -> Any:
        await self.ensure_open()
        status = await DBOS.get_workflow_status_async(conv.engine_id(tenant, run_id))
        if status is None or status.authenticated_user != tenant:
            raise NotFoundError(f"no workflow run {run_id!r}")
        return status

    def _run(self, status: Any, tenant: str, cost_usd: float | None = None) -> WorkflowRun:
        return conv.run_of(status, tenant, self.app_version, cost_usd=cost_usd)

    async def start(
        self,
        tenant: str,
        type: str,
        input: Mapping[str, Any],
        *,
        id: str | None = None,
        started_by: str | None = None,
    ) -> WorkflowRun:
        spec = self.registry.get(type)
        body = spec.validate_input(input)
        if spec.accept is not None:
            await spec.accept(body, self.services, tenant)
        data = body.model_dump(mode="json")
        await self.ensure_open()
        run_id = id or "wr_" + uuid.uuid4().hex[:20]
        internal = conv.engine_id(tenant, run_id)
        existing = await DBOS.get_workflow_status_async(internal)
        if existing is None:
            meta = {"tenant": tenant, "started_by": started_by}
            queue = await DBOS.retrieve_queue_async(QUEUE)
            if queue is None:
                raise ConfigurationError("the workflow queue is missing; restart the gateway")
            try:
                with (
                    SetWorkflowID(internal),
                    DBOSContextSetAuth(tenant, None),
                    SetWorkflowAttributes({"started_by": started_by, "type": type}),
                ):
                    await queue.enqueue_async(_runtime.dbos_workflow(type), meta, data)
            except DBOSConflictingWorkflowError as exc:
                raise ConflictError(f"run {run_id!r} exists with another workflow type") from exc
        status = await self._status(tenant, run_id)
        run = self._run(status, tenant)
        if run.type != type or run.input != data:
            raise ConflictError(
                f"run {run_id!r} already exists with another type or input; use a new id",
                errors=[{"loc": ["body", "id"], "msg": "id in use", "type": "conflict"}],
            )
        if existing is None:
            self.metrics.run_started(type)
        return run

    async def get(self, tenant: str, run_id: str) -> WorkflowRun:
        status = await self._status(tenant, run_id)
        cost = None
        if status.status not in ("SUCCESS", "ENQUEUED"):
            cost = _sum_costs(await self.steps(tenant, run_id))
        return self._run(status, tenant, cost)

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
        await self.ensure_open()
        limit = max(1, min(limit, MAX_LIST))
        end_ms = int(created_before.timestamp() * 1000) if created_before else None
        seen: set[str] = set()
        if cursor is not None:
            cursor_ms, seen = conv.decode_cursor(cursor)
            end_ms = cursor_ms if end_ms is None else min(end_ms, cursor_ms)
        if type is not None:
            self.registry.get(type)  # an unknown type is a 422, not an empty page
        names = [conv.WORKFLOW_PREFIX + (type if type else n) for n in self.registry.types]
        rows = await DBOS.list_workflows_async(
            user=tenant,
            name=sorted(set(names)),
            status=conv.TO_ENGINE[status] if status else None,
            start_time=conv.ms_bound(int(created_after.timestamp() * 1000))
            if created_after
            else None,
            end_time=conv.ms_bound(end_ms) if end_ms is not None else None,
            limit=limit + 1 + len(seen),
            sort_desc=True,
            load_input=True,
            load_output=True,
        )
        rows = [r for r in rows if r.workflow_id not in seen][: limit + 1]
        page, has_more = rows[:limit], len(rows) > limit
        next_cursor = None
        if has_more and page:
            last_ms = int(page[-1].created_at or 0)
            at_edge = [r.workflow_id for r in page if int(r.created_at or 0) == last_ms]
            carried = sorted(seen) if cursor is not None and end_ms == last_ms else []
            next_cursor = conv.encode_cursor(last_ms, carried + at_edge)
        return types.Page[WorkflowRun](
            data=[self._run(r, tenant) for r in page], has_more=has_more, next_cursor=next_cursor
        )

    async def steps(self, tenant: str, run_id: str) -> builtins.list[WorkflowStep]:
        await self._status(tenant, run_id)
        infos = await DBOS.list_workflow_steps_async(conv.engine_id(tenant, run_id))
        return [s for s in (conv.step_of(i) for i in infos) if s is not None]

    async def step_values(
        self, tenant: str, run_id: str, prefix: str
    ) -> builtins.list[dict[str, Any]]:
        """The recorded results of a run's steps named ``prefix...``, in order (errors too)."""
        await self._status(tenant, run_id)
        infos = await DBOS.list_workflow_steps_async(conv.engine_id(tenant, run_id))
        out: builtins.list[dict[str, Any]] = []
        for info in infos:
            if not str(info["function_name"]).startswith(prefix):
                continue
            output, error = info.get("output"), info.get("error")
            if error is not None:
                failure = conv.error_of(error)
                dumped = failure.model_dump() if failure is not None else {}
                out.append({"step": info["function_name"], "error": dumped})
            elif isinstance(output, dict) and isinstance(output.get("v"), dict):
                out.append(output["v"])
        return out

    async def cancel(self, tenant: str, run_id: str) -> WorkflowRun:
        run = self._run(await self._status(tenant, run_id), tenant)
        if run.status in FINISHED:
            raise ConflictError(f"run {run_id!r} has already finished ({run.status})")
        await DBOS.cancel_workflow_async(conv.engine_id(tenant, run_id))
        self.metrics.run_finished(run.type, "cancelled")
        return await self.get(tenant, run_id)

    async def resume(self, tenant: str, run_id: str) -> WorkflowRun:
        """Resume a cancelled run, or one given up after too many recoveries.

        A failed run (engine status ``ERROR``) cannot be: DBOS 3.4's ``resume_workflow``
        leaves ``SUCCESS`` and ``ERROR`` runs as they are, and the failed step's error is
        checkpointed, so running the run again would replay the failure. The 409 names the
        step to fork from instead.
        """
        status = await self._status(tenant, run_id)
        run = self._run(status, tenant)
        if status.status not in ("CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"):
            reason = {
                "succeeded": "it has succeeded",
                "failed": "",
                "queued": "it is queued already",
                "running": "it is running",
            }[run.status]
            if run.status == "failed":
                step = _fork_point(await self.steps(tenant, run_id))
                reason = (
                    "it failed, and a failed run's error is recorded with its step, so the "
                    f"engine does not run it again; fork it from step {step} instead (POST "
                    f'/v1/workflow-runs/{run_id}/fork {{"from_step": {step}}}, or `soma '
                    f"workflow fork {run_id} --from-step {step}`): the steps before it are "
                    "reused, and it and the rest run again"
                )
            if run.stranded:
                reason = (
                    f"it was started by SomaAgent {run.app_version}; a gateway of that version "
                    "resumes it, or fork it to run it on this version"
                )
            raise ConflictError(f"run {run_id!r} cannot be resumed: {reason}")
        await self._settle(conv.engine_id(tenant, run_id))
        await DBOS.resume_workflow_async(conv.engine_id(tenant, run_id), queue_name=QUEUE)
        return await self.get(tenant, run_id)

    async def _settle(self, workflow_id: str, timeout_s: float = 10.0) -> None:
        """Wait for this process's execution of a cancelled run to stop.

        Cancelling is cooperative (the run stops at its next step); resuming while the old
        execution still runs would let two executions race over the same steps.
        """
        instance = dbos_core._dbos_global_instance
        if instance is None:
            return
        deadline = asyncio.get_running_loop().time() + timeout_s
        while workflow_id in instance._active_workflows_set.activeList():
            if asyncio.get_running_loop().time() > deadline:
                raise ConflictError("the run is still stopping; try again in a moment")
            await asyncio.sleep(0.02)

    async def fork(self, tenant: str, run_id: str, from_step: int) -> WorkflowRun:
        run = self._run(await self._status(tenant, run_id), tenant)
        new_id = "wr_" + uuid.uuid4().hex[:20]
        with SetWorkflowID(conv.engine_id(tenant, new_id)):
            await DBOS.fork_workflow_async(
                conv.engine_id(tenant, run_id),
                from_step,
                application_version=self.app_version,
                queue_name=QUEUE,
            )
        self.metrics.run_started(run.type)
        return await self.get(tenant, new_id)

    async def events(
        self, tenant: str, run_id: str, *, after_seq: int = -1, follow: bool = True
    ) -> AsyncIterator[WorkflowEvent]:
        await self._status(tenant, run_id)
        seq = max(after_seq + 1, 0)
        values = DBOS.read_stream_async(
            conv.engine_id(tenant, run_id),
            conv.EVENTS,
            offset=seq,
            polling_interval_sec=self.config.polling_interval_s,
            timeout_seconds=None if follow else 0.01,
        )
        try:
            async for value in values:
                yield WorkflowEvent(seq=seq, **value)
                seq += 1
        except DBOSStreamTimeoutError:
            return
        finally:
            await values.aclose()


def _sqlite_engine(url: str) -> sa.Engine:
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


def _schema_exists(url: str) -> bool:
    import psycopg

    from somaagent.workflows.takeover import conninfo

    try:
        with psycopg.connect(conninfo(url), connect_timeout=5) as connection:
            row = connection.execute("SELECT to_regclass('dbos.workflow_status')").fetchone()
    except psycopg.Error:
        return True
    return bool(row and row[0])


def _fork_point(steps: builtins.list[WorkflowStep]) -> int:
    """The step a failed run is best forked from: its failed step, else the one after the
    last recorded step (the run failed between steps)."""
    for step in steps:
        if step.status == "failed":
            return step.step_id
    return max((s.step_id for s in steps), default=0) + 1


def _sum_costs(steps: builtins.list[WorkflowStep]) -> float | None:
    costs = [s.cost_usd for s in steps if s.cost_usd is not None]
    return sum(costs) if costs else None
