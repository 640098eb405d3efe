"""Reading runs from DBOS's tables for :class:`~somaagent.workflows.dbos.DBOSEngine`: a run,
a page of runs, its steps, its recorded step values and its event stream, in SomaAgent's wire
models (through :mod:`._convert`).

Each query launches DBOS first if it does not run yet (``engine.ensure_open``), and each is
scoped by tenant: DBOS's ``authenticated_user`` is the run's tenant, so a run of another tenant
is a 404.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dbos import DBOS
from dbos._error import DBOSStreamTimeoutError

from somaagent import types
from somaagent.errors import NotFoundError
from somaagent.types.workflows import RunStatus, WorkflowEvent, WorkflowRun, WorkflowStep
from somaagent.workflows import _convert as conv

if TYPE_CHECKING:
    from somaagent.workflows.dbos import DBOSEngine

MAX_LIST = 200
CANCEL_GRACE_S = 2.0
"""How long after a cancel a follower waits for its ``run.finished`` event."""


async def run_status(engine: DBOSEngine, tenant: str, run_id: str) -> Any:
    """DBOS's status of the tenant's run; :class:`NotFoundError` when unknown or another
    tenant's."""
    await engine.ensure_open()
    status = await DBOS.get_workflow_status_async(conv.engine_id(tenant, run_id))
    if status is None or status.authenticated_user != tenant:
        raise NotFoundError(f"no workflow run {run_id!r}")
    return status


async def get_run(engine: DBOSEngine, tenant: str, run_id: str) -> WorkflowRun:
    """One run; its cost so far summed from its steps until it has succeeded."""
    status = await run_status(engine, tenant, run_id)
    cost = None
    if status.status not in ("SUCCESS", "ENQUEUED"):
        cost = sum_costs(await run_steps(engine, tenant, run_id))
    return conv.run_of(status, tenant, engine.app_version, cost_usd=cost)


async def list_runs(
    engine: DBOSEngine,
    tenant: str,
    *,
    type: str | None,
    status: RunStatus | None,
    created_after: datetime | None,
    created_before: datetime | None,
    limit: int,
    cursor: str | None,
) -> types.Page[WorkflowRun]:
    """The tenant's runs of the registered types, newest first, one page at a time."""
    await engine.ensure_open()
    limit = max(1, min(limit, MAX_LIST))
    end_ms = int(created_before.timestamp() * 1000) if created_before else None
    seen: set[str] = set()
    if cursor is not None:
        cursor_ms, seen = conv.decode_cursor(cursor)
        end_ms = cursor_ms if end_ms is None else min(end_ms, cursor_ms)
    if type is not None:
        engine.registry.get(type)  # an unknown type is a 422, not an empty page
    names = [conv.WORKFLOW_PREFIX + (type if type else n) for n in engine.registry.types]
    rows = await DBOS.list_workflows_async(
        user=tenant,
        name=sorted(set(names)),
        status=conv.TO_ENGINE[status] if status else None,
        start_time=conv.ms_bound(int(created_after.timestamp() * 1000)) if created_after else None,
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
        data=[conv.run_of(r, tenant, engine.app_version) for r in page],
        has_more=has_more,
        next_cursor=next_cursor,
    )


async def run_steps(engine: DBOSEngine, tenant: str, run_id: str) -> list[WorkflowStep]:
    """A run's recorded steps, in order, without DBOS's own."""
    await run_status(engine, tenant, run_id)
    infos = await DBOS.list_workflow_steps_async(conv.engine_id(tenant, run_id))
    return [s for s in (conv.step_of(i) for i in infos) if s is not None]


async def step_values(
    engine: DBOSEngine, tenant: str, run_id: str, prefix: str
) -> list[dict[str, Any]]:
    """The recorded results of a run's steps named ``prefix...``, in order (errors too)."""
    await run_status(engine, tenant, run_id)
    infos = await DBOS.list_workflow_steps_async(conv.engine_id(tenant, run_id))
    out: list[dict[str, Any]] = []
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


async def run_events(
    engine: DBOSEngine, tenant: str, run_id: str, *, after_seq: int, follow: bool
) -> AsyncIterator[WorkflowEvent]:
    """The run's events after ``after_seq``; with ``follow``, until its stream closes.

    DBOS ends a follower's stream as soon as the run is no longer active, which for a cancelled
    run can come before the cancel has written its ``run.finished`` event; so a follower of a
    run cancelled less than :data:`CANCEL_GRACE_S` ago waits that long for it.
    """
    await run_status(engine, tenant, run_id)
    internal = conv.engine_id(tenant, run_id)
    seq, last = max(after_seq + 1, 0), None
    async for event in _read_events(engine, internal, seq, follow=follow):
        seq, last = event.seq + 1, event.type
        yield event
    if not follow or last == "run.finished":
        return
    status = await DBOS.get_workflow_status_async(internal)
    if status is None or status.status != "CANCELLED":
        return
    deadline = (status.updated_at or 0) / 1000 + CANCEL_GRACE_S
    while time.time() < deadline:
        async for event in _read_events(engine, internal, seq, follow=False):
            seq = event.seq + 1
            yield event
            if event.type == "run.finished":
                return
        await asyncio.sleep(engine.config.polling_interval_s)


async def _read_events(
    engine: DBOSEngine, workflow_id: str, seq: int, *, follow: bool
) -> AsyncIterator[WorkflowEvent]:
    values = DBOS.read_stream_async(
        workflow_id,
        conv.EVENTS,
        offset=seq,
        polling_interval_sec=engine.config.polling_interval_s,
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


def fork_point(steps: list[WorkflowStep]) -> int:
    """The step a failed run is best forked from: its failed step, else the one after the
    last recorded step (the run failed between steps)."""
    for step in steps:
        if step.status == "failed":
            return step.step_id
    return max((s.step_id for s in steps), default=0) + 1


def sum_costs(steps: list[WorkflowStep]) -> float | None:
    costs = [s.cost_usd for s in steps if s.cost_usd is not None]
    return sum(costs) if costs else None
