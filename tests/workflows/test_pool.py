"""``RunContext.pool`` (what ``batch_chat`` runs its items with) on the DBOS engine alone: a
sliding pool (a slow item holds up no window), results and events in index order, and a run
interrupted mid-pool (its engine stopped, a new one started on the same database, as after a
crash) resumes without running a finished item again, with the same events."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from somaagent.workflows.dbos import DBOSEngine, EngineConfig
from somaagent.workflows.engine import RunContext, WorkflowRegistry, WorkflowTypeSpec

pytestmark = pytest.mark.anyio

calls: dict[int, int] = {}
finished_order: list[int] = []
gate = asyncio.Event()


class Items(BaseModel):
    count: int
    concurrency: int


async def pooled(ctx: RunContext, body: Items) -> list[Any]:
    def item(i: int) -> Callable[[], Awaitable[int]]:
        async def go() -> int:
            calls[i] = calls.get(i, 0) + 1
            if i == 0:
                await gate.wait()  # the slow first item
            finished_order.append(i)
            return i * 10

        return go

    out = []
    async for index, value in ctx.pool(
        lambda i: f"item-{i + 1}",
        [item(i) for i in range(body.count)],
        concurrency=body.concurrency,
    ):
        out.append([index, value])
        await ctx.emit("run.progress", done=index + 1)
    return out


def engine(tmp_path: Path) -> DBOSEngine:
    registry = WorkflowRegistry()
    registry.register(WorkflowTypeSpec(name="pooled", input_model=Items, run=pooled))
    config = EngineConfig(
        system_database_url=f"sqlite:///{tmp_path / 'wf.sqlite'}",
        app_version="9.9.9",
        polling_interval_s=0.02,
        maintenance_interval_s=60,
    )
    return DBOSEngine(registry, config)


async def wait_for(check: Callable[[], bool]) -> None:
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


async def test_a_pool_slides_and_resumes_after_an_interruption(tmp_path: Path) -> None:
    calls.clear()
    finished_order.clear()
    gate.clear()
    first = engine(tmp_path)
    await first.open()
    try:
        await first.start("t", "pooled", {"count": 6, "concurrency": 2}, id="p")
        # Item 0 blocks; with windows nothing past item 1 would start. The pool slides past it.
        await wait_for(lambda: finished_order == [1, 2, 3, 4, 5])
        assert calls == {0: 1, 1: 1, 2: 1, 3: 1, 4: 1, 5: 1}
    finally:
        await first.aclose()  # the "crash": item 0 unfinished, items 1-5 checkpointed
    # A new engine on the same database recovers the run; only item 0 runs again.
    gate.set()
    second = engine(tmp_path)
    await second.open()
    try:
        events = [e async for e in second.events("t", "p")]
        await wait_for(lambda: calls.get(0) == 2)
        for _ in range(100):
            run = await second.get("t", "p")
            if run.status == "succeeded":
                break
            await asyncio.sleep(0.02)
        assert run.status == "succeeded", run
        assert run.output == [[i, i * 10] for i in range(6)]
        assert calls == {0: 2, 1: 1, 2: 1, 3: 1, 4: 1, 5: 1}
        steps = await second.steps("t", "p")
        assert [s.name for s in steps] == [f"item-{i}" for i in range(1, 7)]
        # One step event and one progress event per item, in index order, none twice.
        done = [e.data["name"] for e in events if e.type == "run.step"]
        assert done == [f"item-{i}" for i in range(1, 7)]
        progress = [e.data["done"] for e in events if e.type == "run.progress"]
        assert progress == [1, 2, 3, 4, 5, 6]
        assert [e.seq for e in events] == list(range(len(events)))
    finally:
        gate.clear()
        await second.aclose()
