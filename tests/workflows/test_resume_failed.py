"""A failed run cannot be resumed (DBOS 3.4 leaves ``ERROR`` runs as they are, and the failed
step's error is checkpointed); the 409 names the step to fork from, and a fork from it runs
that step again (here it succeeds the second time) while the steps before it are reused. Real
DBOS on SQLite, no gateway."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from dbos import DBOS
from pydantic import BaseModel

from somaagent.errors import ConflictError
from somaagent.workflows.dbos import DBOSEngine, EngineConfig
from somaagent.workflows.engine import RunContext, StepPolicy, WorkflowRegistry, WorkflowTypeSpec

pytestmark = pytest.mark.anyio

calls: dict[str, int] = {}


class Once(BaseModel):
    key: str


async def fails_once(ctx: RunContext, body: Once) -> dict[str, Any]:
    async def first() -> str:
        calls["first"] = calls.get("first", 0) + 1
        return "prepared"

    async def flaky() -> str:
        calls[body.key] = calls.get(body.key, 0) + 1
        if calls[body.key] == 1:
            raise ValueError("the first try fails")
        return "done"

    prepared = await ctx.step("first", first)
    value = await ctx.step("flaky", flaky, policy=StepPolicy(max_attempts=1))
    return {"prepared": prepared, "value": value}


async def finished(eng: DBOSEngine, run_id: str) -> Any:
    for _ in range(250):
        run = await eng.get("t", run_id)
        if run.status in ("succeeded", "failed", "cancelled"):
            return run
        await asyncio.sleep(0.02)
    raise AssertionError(run)


async def test_a_failed_run_is_forked_from_the_step_its_409_names(tmp_path: Path) -> None:
    registry = WorkflowRegistry()
    registry.register(WorkflowTypeSpec(name="once", input_model=Once, run=fails_once))
    config = EngineConfig(
        system_database_url=f"sqlite:///{tmp_path / 'wf.sqlite'}",
        polling_interval_s=0.02,
        maintenance_interval_s=60,
    )
    eng = DBOSEngine(registry, config)
    await eng.open()
    try:
        await eng.start("t", "once", {"key": "a"}, id="run")
        failed = await finished(eng, "run")
        assert failed.status == "failed" and failed.engine_status == "ERROR"
        steps = await eng.steps("t", "run")
        assert [(s.name, s.status) for s in steps] == [("first", "succeeded"), ("flaky", "failed")]
        flaky_id = steps[1].step_id

        with pytest.raises(ConflictError) as refused:
            await eng.resume("t", "run")
        message = str(refused.value)
        assert f"fork it from step {flaky_id} instead" in message, message
        assert f'/v1/workflow-runs/run/fork {{"from_step": {flaky_id}}}' in message

        # The engine's own resume leaves an ERROR run as it is (why the API refuses it).
        await DBOS.resume_workflow_async("t/run")
        await asyncio.sleep(0.2)
        assert (await eng.get("t", "run")).engine_status == "ERROR"
        assert calls == {"first": 1, "a": 1}

        fork = await eng.fork("t", "run", flaky_id)
        done = await finished(eng, fork.id)
        assert done.status == "succeeded", done.error
        assert done.output == {"prepared": "prepared", "value": "done"}
        assert done.forked_from == "run"
        assert calls == {"first": 1, "a": 2}  # the first step was reused, not run again
    finally:
        await eng.aclose()
