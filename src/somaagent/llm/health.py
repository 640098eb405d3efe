"""Live per-model health: observed latency, error rate, and a circuit breaker with cooldown.

Every model call reports its outcome with :meth:`HealthTracker.record`; the router reads
:meth:`HealthTracker.snapshot` to adjust its latency estimates and to skip broken models, and the
fallback chain asks :meth:`HealthTracker.allow` before each attempt.

The breaker, per model::

    closed ──(5 failures in a row, or ≥50% of the last 20 calls once 10 are in)──▶ open
    open ──(cooldown passed: one probe call allowed)──▶ half_open
    half_open ──(probe succeeds)──▶ closed        half_open ──(probe fails)──▶ open, cooldown x2

The cooldown starts at ``cooldown_s`` and doubles on each failed probe, up to
``max_cooldown_s``; a success resets it. Latency is tracked as an exponentially weighted average
of *slowness*: the observed time over what the registry's latency prior expected for that
answer's length, so answers of any length inform each other. Time comes from an injectable
monotonic ``clock``, so tests drive the breaker with a fake one.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["BreakerState", "HealthConfig", "HealthTracker", "ModelHealth"]

BreakerState = Literal["closed", "open", "half_open"]


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """When a breaker opens, how long it stays open, and how fast averages move.

    Attributes:
        failure_threshold: consecutive failures that open the breaker.
        error_rate_threshold: the share of failures in the window that opens it.
        min_calls: calls the window needs before ``error_rate_threshold`` applies.
        window: how many recent calls the error rate is computed over.
        cooldown_s: seconds an opened breaker waits before allowing a probe call.
        max_cooldown_s: the cap on the cooldown, which doubles on each failed probe.
        alpha: the weight of the newest observation in the slowness average.
    """

    failure_threshold: int = 5
    error_rate_threshold: float = 0.5
    min_calls: int = 10
    window: int = 20
    cooldown_s: float = 30.0
    max_cooldown_s: float = 300.0
    alpha: float = 0.2


@dataclass(frozen=True, slots=True)
class ModelHealth:
    """What the tracker knows about one model.

    Attributes:
        model: the registry name.
        calls: calls recorded so far.
        failures: failed calls recorded so far.
        error_rate: the share of failures among the last ``window`` calls (0 with none).
        latency_ms: the average observed latency, ``None`` before the first call.
        slowness: observed latency over the prior's expectation, averaged (1.0 with no data).
        state: the breaker's state.
        retry_in_s: for an open breaker, seconds until a probe is allowed.
    """

    model: str
    calls: int = 0
    failures: int = 0
    error_rate: float = 0.0
    latency_ms: float | None = None
    slowness: float = 1.0
    state: BreakerState = "closed"
    retry_in_s: float | None = None


@dataclass(slots=True)
class _Stats:
    calls: int = 0
    failures: int = 0
    consecutive: int = 0
    recent: deque[bool] = field(default_factory=deque)
    latency_ms: float | None = None
    slowness: float | None = None
    state: BreakerState = "closed"
    opened_at: float = 0.0
    cooldown: float = 0.0
    probe_started: float | None = None


class HealthTracker:
    """Per-model live statistics and circuit breakers; safe to share between tasks and threads.

    Args:
        config: thresholds and cooldowns.
        clock: a monotonic clock in seconds (tests pass a fake one).
    """

    def __init__(
        self, config: HealthConfig | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config or HealthConfig()
        self._clock = clock
        self._stats: dict[str, _Stats] = {}
        self._lock = threading.Lock()

    def record(
        self, model: str, latency_ms: float, ok: bool, *, expected_ms: float | None = None
    ) -> None:
        """Report one finished call.

        Args:
            model: the registry name.
            latency_ms: how long the call took (to its end, or to the failure).
            ok: whether it succeeded.
            expected_ms: what the registry's prior expected for this answer; a successful call
                with it updates the slowness average.
        """
        cfg = self.config
        with self._lock:
            s = self._stats.setdefault(model, _Stats())
            now = self._clock()
            s.calls += 1
            s.recent.append(ok)
            while len(s.recent) > cfg.window:
                s.recent.popleft()
            if ok:
                s.consecutive = 0
                s.latency_ms = _ewma(s.latency_ms, latency_ms, cfg.alpha)
                if expected_ms is not None and expected_ms > 0:
                    s.slowness = _ewma(s.slowness, latency_ms / expected_ms, cfg.alpha)
                if s.state != "closed":
                    # A successful probe closes the breaker and forgets the failures before it.
                    s.state, s.cooldown, s.probe_started = "closed", 0.0, None
                    s.recent.clear()
                    s.recent.append(True)
                return
            s.failures += 1
            s.consecutive += 1
            if s.state == "half_open":
                doubled = min(max(s.cooldown, cfg.cooldown_s) * 2, cfg.max_cooldown_s)
                self._open(s, now, cooldown=doubled)
            elif s.state == "closed" and self._should_open(s):
                self._open(s, now, cooldown=cfg.cooldown_s)

    def _should_open(self, s: _Stats) -> bool:
        cfg = self.config
        if s.consecutive >= cfg.failure_threshold:
            return True
        if len(s.recent) >= cfg.min_calls:
            failed = sum(1 for ok in s.recent if not ok)
            return failed / len(s.recent) >= cfg.error_rate_threshold
        return False

    @staticmethod
    def _open(s: _Stats, now: float, *, cooldown: float) -> None:
        s.state, s.opened_at, s.cooldown, s.probe_started = "open", now, cooldown, None

    def allow(self, model: str) -> bool:
        """Whether a call to ``model`` may go ahead now.

        A closed breaker allows every call. An open one allows none until its cooldown has
        passed; then it turns half-open and allows one probe call, whose :meth:`record` closes
        or re-opens it. A probe that never reports back is replaced after another cooldown.
        """
        with self._lock:
            s = self._stats.get(model)
            if s is None or s.state == "closed":
                return True
            now = self._clock()
            if s.state == "open":
                if now - s.opened_at < s.cooldown:
                    return False
                s.state, s.probe_started = "half_open", now
                return True
            if s.probe_started is not None and now - s.probe_started < s.cooldown:
                return False
            s.probe_started = now
            return True

    def snapshot(self, model: str) -> ModelHealth:
        """What is known about ``model`` now (no side effects)."""
        with self._lock:
            s = self._stats.get(model)
            if s is None:
                return ModelHealth(model=model)
            failed = sum(1 for ok in s.recent if not ok)
            retry_in: float | None = None
            if s.state == "open":
                retry_in = max(0.0, s.cooldown - (self._clock() - s.opened_at))
            return ModelHealth(
                model=model,
                calls=s.calls,
                failures=s.failures,
                error_rate=failed / len(s.recent) if s.recent else 0.0,
                latency_ms=s.latency_ms,
                slowness=s.slowness if s.slowness is not None else 1.0,
                state=s.state,
                retry_in_s=retry_in,
            )

    def is_open(self, model: str) -> bool:
        """Whether ``model``'s breaker refuses calls right now (open, cooldown not over)."""
        health = self.snapshot(model)
        return health.state == "open" and (health.retry_in_s or 0.0) > 0.0

    def reset(self, model: str | None = None) -> None:
        """Forget one model's statistics, or every model's."""
        with self._lock:
            if model is None:
                self._stats.clear()
            else:
                self._stats.pop(model, None)


def _ewma(previous: float | None, value: float, alpha: float) -> float:
    return value if previous is None else (1.0 - alpha) * previous + alpha * value
