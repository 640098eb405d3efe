"""The health tracker: error rates, slowness, and circuit breakers driven by a fake clock."""

from __future__ import annotations

import pytest

from somaagent.llm.health import HealthConfig, HealthTracker


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def tracker(clock: FakeClock) -> HealthTracker:
    return HealthTracker(HealthConfig(failure_threshold=3, cooldown_s=10.0), clock=clock)


def fail(tracker: HealthTracker, model: str, times: int) -> None:
    for _ in range(times):
        tracker.record(model, 100.0, False)


def test_an_unknown_model_is_healthy(tracker: HealthTracker) -> None:
    health = tracker.snapshot("gpt-4o")
    assert (health.calls, health.error_rate, health.state, health.slowness) == (
        0,
        0.0,
        "closed",
        1.0,
    )
    assert tracker.allow("gpt-4o")


def test_consecutive_failures_open_the_breaker_until_the_cooldown(
    tracker: HealthTracker, clock: FakeClock
) -> None:
    fail(tracker, "m", 2)
    assert tracker.allow("m") and tracker.snapshot("m").state == "closed"
    fail(tracker, "m", 1)
    health = tracker.snapshot("m")
    assert health.state == "open" and health.retry_in_s == pytest.approx(10.0)
    assert not tracker.allow("m")
    assert tracker.is_open("m")
    clock.advance(9.9)
    assert not tracker.allow("m")
    clock.advance(0.2)
    assert not tracker.is_open("m")


def test_a_successful_probe_closes_it(tracker: HealthTracker, clock: FakeClock) -> None:
    fail(tracker, "m", 3)
    clock.advance(10.0)
    assert tracker.allow("m")  # the probe
    assert tracker.snapshot("m").state == "half_open"
    assert not tracker.allow("m")  # one probe at a time
    tracker.record("m", 50.0, True)
    health = tracker.snapshot("m")
    assert health.state == "closed" and health.error_rate == 0.0
    assert tracker.allow("m") and tracker.allow("m")


def test_a_failed_probe_reopens_it_with_a_doubled_cooldown(
    tracker: HealthTracker, clock: FakeClock
) -> None:
    fail(tracker, "m", 3)
    clock.advance(10.0)
    assert tracker.allow("m")
    fail(tracker, "m", 1)
    assert tracker.snapshot("m").state == "open"
    assert tracker.snapshot("m").retry_in_s == pytest.approx(20.0)
    clock.advance(19.0)
    assert not tracker.allow("m")
    clock.advance(1.0)
    assert tracker.allow("m")


def test_the_cooldown_is_capped(clock: FakeClock) -> None:
    tracker = HealthTracker(
        HealthConfig(failure_threshold=1, cooldown_s=10.0, max_cooldown_s=25.0), clock=clock
    )
    fail(tracker, "m", 1)
    for _ in range(4):
        clock.advance(100.0)
        assert tracker.allow("m")
        fail(tracker, "m", 1)
    assert tracker.snapshot("m").retry_in_s == pytest.approx(25.0)


def test_a_lost_probe_is_replaced_after_another_cooldown(
    tracker: HealthTracker, clock: FakeClock
) -> None:
    fail(tracker, "m", 3)
    clock.advance(10.0)
    assert tracker.allow("m")
    clock.advance(5.0)
    assert not tracker.allow("m")
    clock.advance(5.0)
    assert tracker.allow("m")


def test_a_high_error_rate_opens_it_without_a_streak(clock: FakeClock) -> None:
    tracker = HealthTracker(HealthConfig(failure_threshold=100, min_calls=10), clock=clock)
    for i in range(10):
        tracker.record("m", 100.0, ok=i % 2 == 0)
    health = tracker.snapshot("m")
    assert health.error_rate == pytest.approx(0.5)
    assert health.state == "open"


def test_the_error_rate_covers_the_recent_window(clock: FakeClock) -> None:
    tracker = HealthTracker(
        HealthConfig(window=4, failure_threshold=100, min_calls=100), clock=clock
    )
    fail(tracker, "m", 4)
    assert tracker.snapshot("m").error_rate == 1.0
    for _ in range(3):
        tracker.record("m", 10.0, True)
    health = tracker.snapshot("m")
    assert health.error_rate == pytest.approx(0.25)
    assert (health.calls, health.failures) == (7, 4)


def test_slowness_and_latency_follow_observed_calls(tracker: HealthTracker) -> None:
    tracker.record("m", 2000.0, True, expected_ms=1000.0)
    assert tracker.snapshot("m").slowness == pytest.approx(2.0)
    assert tracker.snapshot("m").latency_ms == pytest.approx(2000.0)
    tracker.record("m", 1000.0, True, expected_ms=1000.0)
    health = tracker.snapshot("m")
    assert health.slowness == pytest.approx(0.8 * 2.0 + 0.2 * 1.0)
    assert health.latency_ms == pytest.approx(0.8 * 2000.0 + 0.2 * 1000.0)
    tracker.record("m", 99999.0, False)  # a failure's latency says nothing about speed
    assert tracker.snapshot("m").latency_ms == pytest.approx(health.latency_ms)


def test_models_are_independent_and_reset_forgets(tracker: HealthTracker) -> None:
    fail(tracker, "a", 3)
    assert not tracker.allow("a") and tracker.allow("b")
    tracker.reset("a")
    assert tracker.allow("a")
    fail(tracker, "b", 3)
    tracker.reset()
    assert tracker.allow("b")
