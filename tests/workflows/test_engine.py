"""The DBOS engine on its own (no gateway): step retries and attempts, concurrent steps, the
metrics, and runs left PENDING by another SomaAgent version (listed as stranded, counted,
never resumed silently)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import BaseModel

from somaagent.errors import ConfigurationError, ConflictError
from somaagent.workflows.dbos import DBOSEngine, EngineConfig
from somaagent.workflows.engine import RunContext, StepPolicy, WorkflowRegistry, WorkflowTypeSpec
from somaagent.workflows.metrics import WorkflowMetrics

pytestmark = pytest.mark.anyio


class Flaky(BaseModel):
    failures: int = 0
    block: bool = False


tries: dict[str, int] = {}
release = asyncio.Event()


async def flaky(ctx: RunContext, body: Flaky) -> dict[str, Any]:
    async def sometimes() -> str:
        tries[ctx.run_id] = tries.get(ctx.run_id, 0) + 1
        if tries[ctx.run_id] <= body.failures:
            raise TimeoutError("not yet")
        return "done"

    value = await ctx.step("flaky", sometimes, policy=StepPolicy(max_attempts=3, interval_s=0.01))
    squares = await ctx.steps(lambda i: f"square-{i}", [_square(i) for i in range(4)])
    if body.block:
        await ctx.step("block", release.wait)
    return {"value": value, "squares": squares}


def _square(i: int) -> Callable[[], Awaitable[int]]:
    async def square() -> int:
        await asyncio.sleep(0.01)
        return i * i

    return square


def registry() -> WorkflowRegistry:
    reg = WorkflowRegistry()
    reg.register(WorkflowTypeSpec(name="flaky", input_model=Flaky, run=flaky))
    return reg


def engine(tmp_path: Path, version: str = "9.9.9", metrics: Any = None) -> DBOSEngine:
    config = EngineConfig(
        system_database_url=f"sqlite:///{tmp_path / 'wf.sqlite'}",
        app_version=version,
        polling_interval_s=0.02,
        maintenance_interval_s=60,
    )
    return DBOSEngine(registry(), config, metrics=metrics)


async def finished(eng: DBOSEngine, run_id: str) -> Any:
    async for _ in eng.events("t", run_id):
        pass
    for _ in range(100):
        run = await eng.get("t", run_id)
        if run.status in ("succeeded", "failed", "cancelled"):
            return run
        await asyncio.sleep(0.02)
    raise AssertionError(run)


async def test_retries_attempts_concurrent_steps_and_metrics(tmp_path: Path) -> None:
    prom = CollectorRegistry()
    eng = engine(tmp_path, metrics=WorkflowMetrics(prom))
    await eng.open()
    try:
        await eng.start("t", "flaky", {"failures": 2}, id="ok")
        run = await finished(eng, "ok")
        assert run.status == "succeeded"
        assert run.output == {"value": "done", "squares": [0, 1, 4, 9]}
        steps = await eng.steps("t", "ok")
        assert [(s.name, s.attempts) for s in steps] == [
            ("flaky", 3),
            ("square-0", 1),
            ("square-1", 1),
            ("square-2", 1),
            ("square-3", 1),
        ]
        await eng.start("t", "flaky", {"failures": 5}, id="bad")
        failed = await finished(eng, "bad")
        assert failed.status == "failed" and failed.error is not None
        assert failed.error.step == "flaky" and failed.error.attempts == 3
        assert failed.error.type == "TimeoutError"
        text = generate_latest(prom).decode()
        assert 'soma_workflow_runs_started_total{workflow_type="flaky"} 2.0' in text
        assert (
            'soma_workflow_runs_finished_total{status="failed",workflow_type="flaky"} 1.0' in text
        )
        assert (
            'soma_workflow_step_duration_seconds_count{step="square",workflow_type="flaky"} 4.0'
            in text
        )
        await eng.maintenance_pass()
        assert "soma_workflow_queue_depth 0.0" in generate_latest(prom).decode()
    finally:
        await eng.aclose()


async def test_runs_of_another_version_are_listed_stranded_not_resumed(tmp_path: Path) -> None:
    old = engine(tmp_path, version="0.0.1")
    await old.open()
    try:
        await old.start("t", "flaky", {"block": True}, id="left")
        # wait until the run is blocked in its last step: "running" alone can be seen before
        # its first steps are recorded, and the fork below starts after the last of them
        for _ in range(500):
            if len(await old.steps("t", "left")) >= 5:  # flaky and the four squares
                break
            await asyncio.sleep(0.02)
        assert len(await old.steps("t", "left")) >= 5
    finally:
        await old.aclose()  # the "upgrade": the run stays PENDING on version 0.0.1
    prom = CollectorRegistry()
    new = engine(tmp_path, version="0.0.2", metrics=WorkflowMetrics(prom))
    await new.open()
    try:
        run = await new.get("t", "left")
        assert run.status == "running" and run.stranded and run.app_version == "0.0.1"
        listed = await new.list("t")
        assert [r.stranded for r in listed.data] == [True]
        await new.maintenance_pass()
        assert "soma_workflow_pending_other_versions 1.0" in generate_latest(prom).decode()
        with pytest.raises(ConflictError, match=r"0\.0\.1"):
            await new.resume("t", "left")
        steps = await new.steps("t", "left")
        fork = await new.fork("t", "left", steps[-1].step_id + 1)
        release.set()
        forked = await finished(new, fork.id)
        assert forked.status == "succeeded" and forked.app_version == "0.0.2"
    finally:
        release.clear()
        await new.aclose()


async def test_cancel_ends_the_event_stream_with_a_cancelled_event(tmp_path: Path) -> None:
    eng = engine(tmp_path)
    await eng.open()
    try:
        await eng.start("t", "flaky", {"block": True}, id="c")
        seen: list[Any] = []

        async def follow() -> None:
            async for event in eng.events("t", "c"):
                seen.append(event)

        follower = asyncio.create_task(follow())
        for _ in range(500):  # blocked in its last step, the follower waiting for more
            if len(await eng.steps("t", "c")) >= 5 and len(seen) >= 6:
                break
            await asyncio.sleep(0.02)
        assert not follower.done()
        assert (await eng.cancel("t", "c")).status == "cancelled"
        await asyncio.wait_for(follower, 10)
        assert seen[-1].type == "run.finished" and seen[-1].data == {"status": "cancelled"}
        assert [e.seq for e in seen] == list(range(len(seen)))
        stored = [e async for e in eng.events("t", "c", follow=False)]
        assert [e.type for e in stored] == [e.type for e in seen]  # written once, kept
        release.set()
        # a fork copies the events of the steps it reuses, never the cancel's
        fork = await eng.fork("t", "c", 3)
        assert (await finished(eng, fork.id)).status == "succeeded"
        ends = [
            e.data["status"] async for e in eng.events("t", fork.id) if e.type == "run.finished"
        ]
        assert ends == ["succeeded"]
    finally:
        release.clear()
        await eng.aclose()


async def test_a_follower_waits_briefly_for_a_cancel_event_written_late(tmp_path: Path) -> None:
    from dbos import DBOS

    from somaagent.workflows import _convert, _runtime

    eng = engine(tmp_path)
    await eng.open()
    try:
        await eng.start("t", "flaky", {"block": True}, id="late")
        for _ in range(500):
            if len(await eng.steps("t", "late")) >= 5:
                break
            await asyncio.sleep(0.02)
        internal = _convert.engine_id("t", "late")
        # the cancel's two writes with a gap: DBOS ends a follower once the run is inactive
        await DBOS.cancel_workflow_async(internal)
        follower = asyncio.create_task(_collect(eng.events("t", "late")))
        await asyncio.sleep(0.3)
        assert not follower.done()
        await _runtime.append_event(internal, "run.finished", status="cancelled")
        seen = await asyncio.wait_for(follower, 5)
        assert seen[-1].type == "run.finished" and seen[-1].data["status"] == "cancelled"
    finally:
        release.set()
        release.clear()
        await eng.aclose()


async def _collect(events: Any) -> list[Any]:
    return [e async for e in events]


async def test_an_unreachable_database_at_start_is_a_clear_error(tmp_path: Path) -> None:
    config = EngineConfig(
        system_database_url="postgresql+psycopg://soma:secret@127.0.0.1:1/nowhere",
        executor_id="x",
    )
    eng = DBOSEngine(registry(), config)
    with pytest.raises(ConfigurationError) as failure:
        await eng.open()
    message = str(failure.value)
    assert "could not start" in message and "127.0.0.1:1/nowhere" in message
    assert "secret" not in message  # the password never reaches the message
    # Nothing is left behind: an engine can start in this process afterwards.
    ok = engine(tmp_path)
    await ok.open()
    await ok.aclose()


def test_the_workflow_success_slo_is_a_default_spec_with_rules() -> None:
    from somaagent.sre.slo import default_specs
    from somaagent.sre.slo.rules import rule_groups

    specs = [s for s in default_specs() if s.service == "workflows"]
    assert [s.name for s in specs] == ["workflow-success"]
    text = str(rule_groups(specs))
    assert "soma_workflow_runs_finished_total" in text and 'status="failed"' in text
