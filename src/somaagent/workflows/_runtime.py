"""Inside a run: the DBOS workflow function of each type and the :class:`RunContext` it gets.

Each registered type becomes one DBOS workflow named ``somaagent.<type>`` taking
``(meta, input)``; ``meta`` carries the tenant and who started it, so a recovered or forked run
knows them without any other lookup. A step is a DBOS step whose recorded output is an envelope
``{"v": value, "attempts", "summary", "cost_usd", "duration_ms"}``, so the step list can show
attempts and cost without another table. Retries happen inside the step (one checkpoint per
step, whatever the number of attempts).

Determinism: DBOS numbers a workflow's steps and event writes in the order they are called.
Concurrent steps draw their numbers up front (``DBOS.reserve_step``), one per index, and their
events are written in index order (after all finish for ``steps``; as the finished prefix grows
for ``pool``), so a replay after a crash lines up whatever order the steps finished in.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

import dbos._dbos as dbos_core
from dbos import DBOS
from dbos._error import DBOSWorkflowCancelledError
from dbos._serialization import WorkflowSerializationFormat

from somaagent.errors import APIError, WorkflowStepError
from somaagent.workflows._convert import EVENTS, WORKFLOW_PREFIX, public_id
from somaagent.workflows.engine import DEFAULT_POLICY, RunContext, StepPolicy

if TYPE_CHECKING:
    from somaagent.workflows.dbos import DBOSEngine

T = TypeVar("T")
SUMMARY_CHARS = 200
OUTSIDE_FUNCTION_ID = 2**31 - 1
"""The step number recorded with an event written from outside the run (on cancel): above any
real step, so a fork, which copies the events of the steps before its ``from_step``, never
copies it."""

_active: DBOSEngine | None = None
"""The engine of this process (DBOS itself is one per process)."""
_registered: dict[str, Callable[..., Any]] = {}
"""DBOS workflow functions by type name: DBOS keeps them for the life of the process."""


def set_active(engine: DBOSEngine | None) -> None:
    global _active
    _active = engine


def active() -> DBOSEngine:
    if _active is None:
        raise RuntimeError("no workflow engine is running in this process")
    return _active


def summarize(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + "…"


def _error_type(exc: BaseException) -> str:
    if isinstance(exc, APIError):
        return exc.problem_type
    return type(exc).__name__


def _now() -> str:
    return datetime.now(UTC).isoformat()


class DBOSRunContext(RunContext):
    """A :class:`RunContext` on DBOS; one per execution of a run (recovery makes a new one)."""

    def __init__(
        self, engine: DBOSEngine, workflow_type: str, run_id: str, meta: Mapping[str, Any]
    ) -> None:
        self.engine = engine
        self.workflow_type = workflow_type
        self.run_id = run_id
        self.tenant = str(meta["tenant"])
        self.started_by = meta.get("started_by")
        self.services = engine.services
        self.cost_usd: float | None = None

    def _body(
        self,
        name: str,
        fn: Callable[[], Awaitable[T]],
        policy: StepPolicy,
        summary: Callable[[T], str] | None,
        cost: Callable[[T], float | None] | None,
    ) -> Callable[[], Coroutine[Any, Any, dict[str, Any]]]:
        async def body() -> dict[str, Any]:
            started = time.perf_counter()
            attempts, delay = 0, policy.interval_s
            while True:
                attempts += 1
                try:
                    value = await fn()
                    break
                except (asyncio.CancelledError, DBOSWorkflowCancelledError):
                    raise
                except Exception as exc:
                    if attempts >= policy.max_attempts or not policy.retryable(exc):
                        raise WorkflowStepError(
                            name, attempts, _error_type(exc), str(exc) or type(exc).__name__
                        ) from exc
                    await asyncio.sleep(delay)
                    delay *= policy.backoff
            seconds = time.perf_counter() - started
            self.engine.metrics.step_ran(self.workflow_type, name, seconds)
            return {
                "v": value,
                "attempts": attempts,
                "summary": summarize(summary(value) if summary else value),
                "cost_usd": cost(value) if cost else None,
                "duration_ms": round(seconds * 1000, 3),
            }

        return body

    def _took(self, envelope: Mapping[str, Any]) -> None:
        step_cost = envelope.get("cost_usd")
        if step_cost is not None:
            self.cost_usd = (self.cost_usd or 0.0) + float(step_cost)

    def _step_event(self, name: str, envelope: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "name": name,
            "status": "succeeded",
            "attempts": envelope.get("attempts"),
            "summary": envelope.get("summary"),
            "cost_usd": envelope.get("cost_usd"),
            "duration_ms": envelope.get("duration_ms"),
        }

    async def step(
        self,
        name: str,
        fn: Callable[[], Awaitable[T]],
        *,
        policy: StepPolicy = DEFAULT_POLICY,
        summary: Callable[[T], str] | None = None,
        cost: Callable[[T], float | None] | None = None,
    ) -> T:
        try:
            envelope = await DBOS.run_step_async(
                {"name": name}, self._body(name, fn, policy, summary, cost)
            )
        except WorkflowStepError as exc:
            await self.emit(
                "run.step", name=name, status="failed", attempts=exc.attempts, error=exc.message
            )
            raise
        self._took(envelope)
        await self.emit("run.step", **self._step_event(name, envelope))
        return cast(T, envelope["v"])

    async def steps(
        self,
        name: Callable[[int], str],
        fns: Sequence[Callable[[], Awaitable[T]]],
        *,
        policy: StepPolicy = DEFAULT_POLICY,
        summary: Callable[[T], str] | None = None,
        cost: Callable[[T], float | None] | None = None,
    ) -> list[T | WorkflowStepError]:
        reservations = [DBOS.reserve_step() for _ in fns]
        names = [name(i) for i in range(len(fns))]
        outcomes = await asyncio.gather(
            *(
                r.run_async({"name": n}, self._body(n, fn, policy, summary, cost))
                for r, n, fn in zip(reservations, names, fns, strict=True)
            ),
            return_exceptions=True,
        )
        results: list[T | WorkflowStepError] = []
        for step_name, outcome in zip(names, outcomes, strict=True):
            if isinstance(outcome, WorkflowStepError):
                await self.emit(
                    "run.step",
                    name=step_name,
                    status="failed",
                    attempts=outcome.attempts,
                    error=outcome.message,
                )
                results.append(outcome)
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                self._took(outcome)
                await self.emit("run.step", **self._step_event(step_name, outcome))
                results.append(cast(T, outcome["v"]))
        return results

    async def pool(
        self,
        name: Callable[[int], str],
        fns: Sequence[Callable[[], Awaitable[T]]],
        *,
        concurrency: int,
        policy: StepPolicy = DEFAULT_POLICY,
        summary: Callable[[T], str] | None = None,
        cost: Callable[[T], float | None] | None = None,
    ) -> AsyncIterator[tuple[int, T | WorkflowStepError]]:
        # Every step number is drawn now, in index order: which step finishes first cannot
        # change which checkpoint an index reads on replay.
        reservations = [DBOS.reserve_step() for _ in fns]
        names = [name(i) for i in range(len(fns))]

        def launch(i: int) -> asyncio.Task[Any]:
            body = self._body(names[i], fns[i], policy, summary, cost)
            return asyncio.ensure_future(reservations[i].run_async({"name": names[i]}, body))

        running: dict[asyncio.Task[Any], int] = {}
        done: dict[int, Any] = {}
        started = emitted = 0
        try:
            while emitted < len(fns):
                while started < len(fns) and len(running) < max(1, concurrency):
                    running[launch(started)] = started
                    started += 1
                finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    index = running.pop(task)
                    outcome = task.exception() or task.result()
                    if isinstance(outcome, BaseException) and not isinstance(
                        outcome, WorkflowStepError
                    ):
                        raise outcome
                    done[index] = outcome
                while emitted in done:  # the finished prefix, in index order
                    outcome = done.pop(emitted)
                    yield emitted, await self._settled(names[emitted], outcome)
                    emitted += 1
        finally:
            for task in running:
                task.cancel()

    async def _settled(self, step_name: str, outcome: Any) -> Any:
        """A finished step's event, and its value (or its :class:`WorkflowStepError`)."""
        if isinstance(outcome, WorkflowStepError):
            await self.emit(
                "run.step",
                name=step_name,
                status="failed",
                attempts=outcome.attempts,
                error=outcome.message,
            )
            return outcome
        self._took(outcome)
        await self.emit("run.step", **self._step_event(step_name, outcome))
        return outcome["v"]

    async def emit(self, type: str, **data: Any) -> None:
        await DBOS.write_stream_async(EVENTS, {"type": type, "data": data, "at": _now()})


async def append_event(workflow_id: str, type: str, **data: Any) -> None:
    """Write an event to a run's stream from outside the run (the run does not execute here,
    or has been cancelled and writes nothing more): at the stream's next free sequence number,
    in the shape :meth:`DBOSRunContext.emit` writes.

    DBOS offers stream writes only inside a workflow or step, so this goes to its system
    database the way a step's write does.
    """
    instance = dbos_core._dbos_global_instance
    if instance is None:
        raise RuntimeError("DBOS does not run in this process")
    value = {"type": type, "data": data, "at": _now()}
    await asyncio.to_thread(
        instance._sys_db.write_stream_from_step,
        workflow_id,
        OUTSIDE_FUNCTION_ID,
        EVENTS,
        value,
        serialization_type=WorkflowSerializationFormat.DEFAULT,
    )


async def _execute(workflow_type: str, meta: dict[str, Any], data: dict[str, Any]) -> Any:
    engine = active()
    spec = engine.registry.get(workflow_type)
    run_id = public_id(str(meta["tenant"]), str(DBOS.workflow_id))
    ctx = DBOSRunContext(engine, workflow_type, run_id, meta)
    await ctx.emit("run.started", workflow_type=workflow_type)
    try:
        output = await spec.run(ctx, spec.input_model.model_validate(data))
    except (asyncio.CancelledError, DBOSWorkflowCancelledError):
        raise  # counted by the cancel call, which also sees runs cancelled while queued
    except Exception as exc:
        step = exc.step if isinstance(exc, WorkflowStepError) else None
        message = exc.message if isinstance(exc, WorkflowStepError) else str(exc)
        await ctx.emit("run.finished", status="failed", step=step, error=message)
        await DBOS.close_stream_async(EVENTS)
        engine.metrics.run_finished(workflow_type, "failed")
        raise
    await ctx.emit("run.finished", status="succeeded", cost_usd=ctx.cost_usd)
    await DBOS.close_stream_async(EVENTS)
    engine.metrics.run_finished(workflow_type, "succeeded")
    return {"output": output, "cost_usd": ctx.cost_usd}


def register_dbos_workflow(workflow_type: str, max_recovery_attempts: int) -> None:
    """Register ``somaagent.<type>`` with DBOS, once per process (before DBOS launches)."""
    if workflow_type in _registered:
        return

    async def run(meta: dict[str, Any], data: dict[str, Any]) -> Any:
        return await _execute(workflow_type, meta, data)

    run.__name__ = run.__qualname__ = "workflow_" + workflow_type
    _registered[workflow_type] = DBOS.workflow(
        name=WORKFLOW_PREFIX + workflow_type, max_recovery_attempts=max_recovery_attempts
    )(run)


def dbos_workflow(workflow_type: str) -> Callable[..., Any]:
    return _registered[workflow_type]
