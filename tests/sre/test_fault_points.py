"""Fault points on their own: what each fault does to a call, its share of calls, its expiry,
and the callbacks the gateway's metrics hang on. Times are real but short (tens of ms)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from somaagent.errors import NotFoundError, VectorStoreError
from somaagent.sre.chaos.points import POINTS, FaultPoints
from somaagent.types import FaultCreate

pytestmark = pytest.mark.anyio


class Unavailable(Exception):
    pass


class TimedOut(Exception):
    pass


async def _call(points: FaultPoints, name: str = "vector-store") -> float:
    """One call through ``name``; how long it was held there."""
    start = time.perf_counter()
    await points.hit(name, unavailable=Unavailable, timed_out=TimedOut)
    return time.perf_counter() - start


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_a_clear_point_lets_calls_through_at_once() -> None:
    points = FaultPoints()
    assert max([await _call(points) for _ in range(20)]) < 0.01
    assert [p.name for p in points.list()] == list(POINTS) == points.names()
    assert all(p.fault is None and p.hits == 0 for p in points.list())


async def test_latency_and_jitter_hold_each_call() -> None:
    points = FaultPoints(seed=1)
    points.set("vector-store", FaultCreate(latency_ms=60, jitter_ms=20))
    held = [await _call(points) for _ in range(5)]
    assert all(0.039 <= t < 0.3 for t in held), held
    assert len({round(t, 3) for t in held}) > 1  # jitter varies the delay
    assert await _call(points, "embedder") < 0.01  # other points are untouched
    assert points.get("vector-store").hits == 5


async def test_abort_raises_the_dependencys_own_error_after_the_delay() -> None:
    points = FaultPoints()
    points.set("vector-store", FaultCreate(abort=True, latency_ms=30, experiment="exp-1"))

    def unavailable(message: str) -> VectorStoreError:
        return VectorStoreError(message, backend="chroma")

    start = time.perf_counter()
    with pytest.raises(VectorStoreError, match="fault injected by exp-1") as caught:
        await points.hit("vector-store", unavailable=unavailable, timed_out=TimedOut)
    assert time.perf_counter() - start >= 0.029
    assert caught.value.status_code == 503 and caught.value.backend == "chroma"


async def test_loss_costs_retransmission_time() -> None:
    points = FaultPoints(seed=3)
    points.set("model", FaultCreate(loss_percent=50, loss_rto_ms=20))
    held = [await _call(points, "model") for _ in range(20)]
    lost = [t for t in held if t >= 0.019]
    assert 3 <= len(lost) <= 17  # about half the calls lost a first try
    assert all(t < 0.02 * (2**6) for t in held)  # at most six resends


async def test_percent_faults_only_that_share_of_calls() -> None:
    points = FaultPoints(seed=5)
    points.set("vector-store", FaultCreate(abort=True, percent=25))
    failed = 0
    for _ in range(200):
        try:
            await _call(points)
        except Unavailable:
            failed += 1
    assert 25 <= failed <= 75
    assert points.get("vector-store").hits == failed


async def test_a_partition_stalls_calls_until_it_is_cleared() -> None:
    points = FaultPoints()
    points.set("vector-store", FaultCreate(partition=True, stall_s=5))
    stalled = asyncio.create_task(_call(points))
    await asyncio.sleep(0.1)
    assert not stalled.done()
    assert points.clear("vector-store") is True
    held = await asyncio.wait_for(stalled, 1)
    assert 0.09 <= held < 1  # it went through once healed: late, not lost


async def test_a_partition_that_lasts_times_the_call_out() -> None:
    points = FaultPoints()
    points.set("model", FaultCreate(partition=True, stall_s=0.05))
    with pytest.raises(TimedOut, match=r"did not answer within 0\.05 s"):
        await _call(points, "model")


async def test_a_fault_expires_by_itself() -> None:
    clock = Clock()
    changes: list[tuple[str, bool]] = []
    points = FaultPoints(clock=clock, on_change=lambda point, on: changes.append((point, on)))
    shown = points.set("embedder", FaultCreate(abort=True, ttl_s=60))
    assert shown.expires_at is not None and shown.set_at is not None
    assert (shown.expires_at - shown.set_at).total_seconds() == 60
    with pytest.raises(Unavailable):
        await _call(points, "embedder")
    clock.now += 60
    assert await _call(points, "embedder") < 0.01
    assert points.get("embedder").fault is None
    assert changes == [("embedder", True), ("embedder", False)]


async def test_effects_are_reported_per_point() -> None:
    effects: list[tuple[str, str]] = []
    points = FaultPoints(seed=2, on_hit=lambda point, effect: effects.append((point, effect)))
    points.set("vector-store", FaultCreate(latency_ms=1, abort=True))
    with pytest.raises(Unavailable):
        await _call(points)
    points.set("model", FaultCreate(partition=True, stall_s=0.01))
    with pytest.raises(TimedOut):
        await _call(points, "model")
    assert effects == [
        ("vector-store", "delayed"),
        ("vector-store", "aborted"),
        ("model", "stalled"),
        ("model", "timed_out"),
    ]


def test_unknown_points_are_not_found_and_clearing_is_idempotent() -> None:
    points = FaultPoints()
    with pytest.raises(NotFoundError, match="vector-store, embedder, model"):
        points.set("database", FaultCreate(abort=True))
    with pytest.raises(NotFoundError):
        points.get("database")
    assert points.clear("model") is False
    points.set("model", FaultCreate(abort=True))
    points.set("embedder", FaultCreate(latency_ms=5))
    assert points.clear_all() == 2
    assert points.clear_all() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, None),
        ({"latency_ms": -1}, "latency_ms"),
        ({"abort": True, "percent": 0}, "percent"),
        ({"abort": True, "ttl_s": 0}, "ttl_s"),
        ({"abort": True, "loss_percent": 101}, "loss_percent"),
        ({"abort": True, "colour": "red"}, "colour"),
    ],
)
def test_a_fault_that_does_nothing_or_is_out_of_range_is_refused(
    body: dict[str, Any], field: str | None
) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as caught:
        FaultCreate.model_validate(body)
    locations = [error["loc"] for error in caught.value.errors()]
    if field is None:
        assert "at least one of" in str(caught.value)
    else:
        assert (field,) in locations


def test_descriptions_say_what_the_fault_does() -> None:
    assert FaultCreate(latency_ms=100, jitter_ms=10).describe() == "latency 100 ms ± 10 ms"
    assert (
        FaultCreate(abort=True, percent=50).describe() == "calls fail (unavailable) on 50% of calls"
    )
    assert "partition" in FaultCreate(partition=True).describe()
