"""Fault points: named places inside the gateway where a fault can be switched on while it runs.

Chaos Mesh faults the network and the pods around a service. On one machine the embedded
vector store, the embedding model and the local chat model run inside the gateway's own
process, so there is no network hop for a fault proxy to sit on. A fault point is the
in-process stand-in (the idea of Envoy's fault filter and of failpoints): every call to a
dependency passes through its point, which may

* add latency (± jitter), as ``NetworkDelay`` or ``IoDelay`` would;
* cost a lost request's retransmission time (``loss_percent``: each try is lost with that
  chance and resent after ``loss_rto_ms``, doubling, at most six times), as ``NetworkLoss``;
* fail the call with the dependency's own "unavailable" error (``abort``), as ``PodFailure``;
* stall the call until the fault is cleared, or fail it as timed out after ``stall_s``
  (``partition``), as ``NetworkPartition``.

``percent`` applies the fault to that share of calls. Every fault expires after ``ttl_s``,
so a chaos run killed outright (``kill -9``) leaves nothing behind for longer than that; the
runner clears it on rollback anyway. A call through a point with no fault costs about 0.3 µs
(an await and a dictionary check, measured on the 2-core dev VM), against the gateway's
~300 µs per request.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, get_args

from somaagent.errors import NotFoundError
from somaagent.sre.chaos._delays import fault_delay
from somaagent.types import Fault, FaultCreate, FaultPoint, FaultPointName

__all__ = ["POINTS", "Effect", "FaultPoints"]

POINTS: Mapping[FaultPointName, str] = {
    "vector-store": "every call to the vector store (search, upsert, get, delete, count, ...)",
    "embedder": "every call to the embedding model that is not answered from the cache",
    "model": "every chat model call, streamed or not, before the provider is reached",
}
"""The gateway's fault points and which calls pass through each."""

Effect = Literal["delayed", "lost", "aborted", "stalled", "timed_out"]
ErrorFactory = Callable[[str], BaseException]


@dataclass
class _Armed:
    fault: Fault
    set_at: float
    expires_at: float
    hits: int = 0
    waiters: set[asyncio.Event] = field(default_factory=set)


class FaultPoints:
    """The fault points of one gateway process.

    Args:
        seed: seeds the random choices (tests); ``None`` for a fresh generator.
        clock: wall-clock seconds (tests pass a fake one).
        on_hit: called with the point and the effect each time a fault acts (metrics).
        on_change: called with the point and whether a fault is now on it (metrics).
    """

    def __init__(
        self,
        *,
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
        on_hit: Callable[[str, Effect], None] | None = None,
        on_change: Callable[[str, bool], None] | None = None,
    ) -> None:
        self._armed: dict[str, _Armed] = {}
        self._random = random.Random(seed)
        self._clock = clock
        self._on_hit = on_hit or (lambda _point, _effect: None)
        self._on_change = on_change or (lambda _point, _on: None)

    @staticmethod
    def names() -> list[FaultPointName]:
        """Every point's name."""
        return list(get_args(FaultPointName))

    def _check(self, name: str) -> FaultPointName:
        if name not in POINTS:
            known = ", ".join(POINTS)
            raise NotFoundError(f"no fault point {name!r}; the gateway has: {known}")
        return name  # type: ignore[return-value]  # checked just above

    def set(self, name: str, fault: FaultCreate) -> FaultPoint:
        """Put ``fault`` on point ``name`` (replacing any fault there) until it expires.

        Raises:
            NotFoundError: there is no such point.
        """
        point = self._check(name)
        self._release(self._armed.pop(point, None))
        now = self._clock()
        self._armed[point] = _Armed(
            fault=Fault.model_validate(fault.model_dump()),
            set_at=now,
            expires_at=now + fault.ttl_s,
        )
        self._on_change(point, True)
        return self.get(point)

    def clear(self, name: str) -> bool:
        """Take the fault off point ``name``; whether there was one (stalled calls go on).

        Raises:
            NotFoundError: there is no such point.
        """
        point = self._check(name)
        armed = self._armed.pop(point, None)
        self._release(armed)
        if armed is not None:
            self._on_change(point, False)
        return armed is not None

    def clear_all(self) -> int:
        """Take every fault off; how many there were."""
        return sum(self.clear(name) for name in list(self._armed))

    def get(self, name: str) -> FaultPoint:
        """Point ``name`` and the fault on it, if any.

        Raises:
            NotFoundError: there is no such point.
        """
        point = self._check(name)
        armed = self._live(point)
        if armed is None:
            return FaultPoint(name=point, description=POINTS[point])
        return FaultPoint(
            name=point,
            description=POINTS[point],
            fault=armed.fault,
            set_at=datetime.fromtimestamp(armed.set_at, UTC),
            expires_at=datetime.fromtimestamp(armed.expires_at, UTC),
            hits=armed.hits,
        )

    def list(self) -> list[FaultPoint]:
        """Every point, in a stable order."""
        return [self.get(name) for name in POINTS]

    def _live(self, point: str) -> _Armed | None:
        armed = self._armed.get(point)
        if armed is not None and self._clock() >= armed.expires_at:
            del self._armed[point]
            self._release(armed)
            self._on_change(point, False)
            return None
        return armed

    @staticmethod
    def _release(armed: _Armed | None) -> None:
        if armed is not None:
            for waiter in armed.waiters:
                waiter.set()

    async def hit(self, name: str, *, unavailable: ErrorFactory, timed_out: ErrorFactory) -> None:
        """Pass one call through point ``name``: return at once, after a delay, or raise.

        Args:
            unavailable: builds the dependency's "unavailable" error from a message.
            timed_out: builds the dependency's "timed out" error from a message.
        """
        if not self._armed:
            return
        armed = self._live(name)
        if armed is None:
            return
        fault = armed.fault
        if fault.percent < 100 and self._random.random() * 100 >= fault.percent:
            return
        armed.hits += 1
        who = f" by {fault.experiment}" if fault.experiment else ""
        if fault.partition:
            self._on_hit(name, "stalled")
            healed = asyncio.Event()
            armed.waiters.add(healed)
            try:
                await asyncio.wait_for(healed.wait(), timeout=fault.stall_s)
            except TimeoutError:
                self._on_hit(name, "timed_out")
                raise timed_out(
                    f"{name} did not answer within {fault.stall_s:g} s (partition injected{who})"
                ) from None
            finally:
                armed.waiters.discard(healed)
            return  # the partition healed: the call goes through
        delay = self._delay(fault, name)
        if delay > 0:
            await asyncio.sleep(delay)
        if fault.abort:
            self._on_hit(name, "aborted")
            raise unavailable(f"{name} is unavailable (fault injected{who})")

    def _delay(self, fault: Fault, name: str) -> float:
        drawn = fault_delay(
            self._random,
            latency_ms=fault.latency_ms,
            jitter_ms=fault.jitter_ms,
            loss_percent=fault.loss_percent,
            loss_rto_ms=fault.loss_rto_ms,
        )
        if drawn.delayed:
            self._on_hit(name, "delayed")
        for _ in range(drawn.lost):
            self._on_hit(name, "lost")
        return drawn.seconds
