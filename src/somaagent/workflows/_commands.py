"""Changing runs for :class:`~somaagent.workflows.dbos.DBOSEngine`: starting one on the queue
(idempotent on its id), cancelling, resuming and forking, each a 409 that says why when the run
is not in a state that allows it.

A run's tenant is DBOS's ``authenticated_user``; who started it and its type are attributes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import dbos._dbos as dbos_core
from dbos import DBOS, DBOSContextSetAuth, SetWorkflowAttributes, SetWorkflowID
from dbos._error import DBOSConflictingWorkflowError

from somaagent.db.ids import new_id
from somaagent.errors import BusyError, ConfigurationError, ConflictError, ValidationError
from somaagent.types.workflows import FINISHED, WorkflowRun
from somaagent.workflows import _convert as conv
from somaagent.workflows import _queries, _runtime
from somaagent.workflows._launch import QUEUE

if TYPE_CHECKING:
    from somaagent.workflows.dbos import DBOSEngine


async def start(
    engine: DBOSEngine,
    tenant: str,
    type: str,
    input: Mapping[str, Any],
    *,
    id: str | None,
    started_by: str | None,
) -> WorkflowRun:
    """Enqueue a run, unless one with this id exists (the same type and input: that run)."""
    spec = engine.registry.get(type)
    body = spec.validate_input(input)
    if spec.accept is not None:
        await spec.accept(body, engine.services, tenant)
    data = body.model_dump(mode="json")
    await engine.ensure_open()
    run_id = id or new_id("wr")
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
    status = await _queries.run_status(engine, tenant, run_id)
    run = conv.run_of(status, tenant, engine.app_version)
    if run.type != type or run.input != data:
        raise ConflictError(
            f"run {run_id!r} already exists with another type or input; use a new id",
            errors=[{"loc": ["body", "id"], "msg": "id in use", "type": "conflict"}],
        )
    if existing is None:
        engine.metrics.run_started(type)
    return run


async def cancel(engine: DBOSEngine, tenant: str, run_id: str) -> WorkflowRun:
    """Cancel a queued or running run; 409 when it has finished.

    The run's event stream gets a last ``run.finished`` event with status ``cancelled``, so
    whoever follows it sees the end (the run itself writes nothing once cancelled).
    """
    status = await _queries.run_status(engine, tenant, run_id)
    run = conv.run_of(status, tenant, engine.app_version)
    if run.status in FINISHED:
        raise ConflictError(f"run {run_id!r} has already finished ({run.status})")
    internal = conv.engine_id(tenant, run_id)
    await DBOS.cancel_workflow_async(internal)
    after = await engine.get(tenant, run_id)
    # DBOS leaves a run that finished meanwhile as it is; it has written its own end.
    if after.status == "cancelled":
        await _runtime.append_event(internal, "run.finished", status="cancelled")
        engine.metrics.run_finished(run.type, "cancelled")
    return after


async def resume(engine: DBOSEngine, tenant: str, run_id: str) -> WorkflowRun:
    """Resume a cancelled run, or one given up after too many recoveries; any other is a 409
    that says why (for a failed one: the step to fork from, see
    :meth:`DBOSEngine.resume <somaagent.workflows.dbos.DBOSEngine.resume>`)."""
    status = await _queries.run_status(engine, tenant, run_id)
    run = conv.run_of(status, tenant, engine.app_version)
    if status.status not in ("CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"):
        reason = {
            "succeeded": "it has succeeded",
            "failed": "",
            "queued": "it is queued already",
            "running": "it is running",
        }[run.status]
        if run.status == "failed":
            step = _queries.fork_point(await engine.steps(tenant, run_id))
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
    await settle(conv.engine_id(tenant, run_id))
    await DBOS.resume_workflow_async(conv.engine_id(tenant, run_id), queue_name=QUEUE)
    return await engine.get(tenant, run_id)


async def settle(workflow_id: str, timeout_s: float = 10.0) -> None:
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
            raise BusyError("the run is still stopping; try again in a moment")
        await asyncio.sleep(0.02)


async def fork(engine: DBOSEngine, tenant: str, run_id: str, from_step: int) -> WorkflowRun:
    """A new run on this version with the same input, reusing the steps before
    ``from_step``, which may be at most one past the run's last recorded step (a 422 naming
    ``from_step`` otherwise: DBOS would copy the whole run and run nothing again)."""
    status = await _queries.run_status(engine, tenant, run_id)
    run = conv.run_of(status, tenant, engine.app_version)
    steps = await _queries.run_steps(engine, tenant, run_id)
    last = max((s.step_id for s in steps), default=0)
    if from_step > last + 1:
        has = f"{len(steps)} steps, the last with step_id {last}" if steps else "no steps yet"
        message = (
            f"from_step {from_step} is past the end of run {run_id!r}: it has {has}; "
            f"fork from a step_id up to {last + 1}"
        )
        raise ValidationError(
            message,
            errors=[{"loc": ["body", "from_step"], "msg": message, "type": "value_error"}],
        )
    fork_id = new_id("wr")
    with SetWorkflowID(conv.engine_id(tenant, fork_id)):
        await DBOS.fork_workflow_async(
            conv.engine_id(tenant, run_id),
            from_step,
            application_version=engine.app_version,
            queue_name=QUEUE,
        )
    engine.metrics.run_started(run.type)
    return await engine.get(tenant, fork_id)
