"""Faults that another process puts in place when asked: the gateway's fault points (through
its admin API) and a ``soma chaos proxy`` left running (through its control API).

Both take the fault away again when asked, and both also end it by themselves at a deadline
given when it was set, so a run that is killed outright leaves nothing behind for long. A
rollback that cannot reach them is retried, then reported with that deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Literal, Protocol

from somaagent.errors import ConfigurationError, FaultInjectionError, SomaAgentError
from somaagent.sre.chaos.proxy import ProxyFaults
from somaagent.sre.chaos.proxy_control import ProxyControlClient
from somaagent.sre.chaos.spec import (
    Experiment,
    IoDelay,
    NetworkDelay,
    NetworkLoss,
    NetworkPartition,
    PodFailure,
)
from somaagent.types import FaultCreate, FaultPoint

__all__ = ["FAULT_GRACE", "FaultController", "PointInjector", "RemoteProxyInjector", "point_fault"]

FAULT_GRACE = timedelta(seconds=30)
"""How long past its planned end a local fault ends by itself (a stress worker's deadline, a
fault point's or a proxy fault's TTL)."""
_ROLLBACK_TRIES = 3


def point_fault(experiment: Experiment, *, duration: timedelta | None = None) -> FaultCreate:
    """The gateway fault-point fault that stands in for ``experiment``'s fault.

    A delay delays each call, packet loss costs retransmission time, a partition stalls calls,
    a failed pod fails them with the dependency's "unavailable" error. The fault clears itself
    30 s after the planned end (``ttl_s``), so a run that is killed leaves nothing behind.
    """
    fault = experiment.fault
    ttl = ((duration or experiment.duration) + FAULT_GRACE).total_seconds()
    common: dict[str, Any] = {"ttl_s": ttl, "experiment": experiment.name}
    if isinstance(fault, NetworkDelay):
        return FaultCreate(
            latency_ms=fault.latency.total_seconds() * 1000,
            jitter_ms=fault.jitter.total_seconds() * 1000,
            **common,
        )
    if isinstance(fault, NetworkLoss):
        return FaultCreate(loss_percent=fault.loss, **common)
    if isinstance(fault, NetworkPartition):
        return FaultCreate(partition=True, **common)
    if isinstance(fault, IoDelay):
        return FaultCreate(
            latency_ms=fault.delay.total_seconds() * 1000, percent=fault.percent, **common
        )
    if isinstance(fault, PodFailure):
        return FaultCreate(abort=True, **common)
    raise ConfigurationError(f"a {fault.type} experiment has no fault-point fault")


def _clear_with_retries(
    clear: Callable[[], object],
    *,
    what: str,
    ttl_s: float,
    sleep: Callable[[float], None],
    target: str,
) -> None:
    """Call ``clear`` up to three times; then a :class:`FaultInjectionError` that says the
    fault still ends by itself within ``ttl_s`` of being set."""
    last: SomaAgentError | None = None
    for attempt in range(_ROLLBACK_TRIES):
        try:
            clear()
        except SomaAgentError as exc:
            last = exc
            if attempt + 1 < _ROLLBACK_TRIES:
                sleep(0.5 * (attempt + 1))
        else:
            return
    raise FaultInjectionError(
        f"could not clear the fault on {what} ({last}); it clears itself within "
        f"{ttl_s:g} s of being set",
        target=target,
    )


class FaultController(Protocol):
    """What sets faults on a gateway's fault points: the SDK's ``client.faults``."""

    def get(self, point: str) -> FaultPoint:
        """The point and the fault on it."""
        ...

    def set(self, point: str, fault: FaultCreate) -> FaultPoint:
        """Put ``fault`` on the point."""
        ...

    def clear(self, point: str) -> None:
        """Take the fault off the point."""
        ...


class PointInjector:
    """A fault on one of the gateway's fault points, set and cleared through its admin API.

    ``setup`` reads the point, so a gateway that is down, a key that is not an operator's or
    a gateway with fault injection off fails the run before anything is judged. Rollback is
    tried three times; if the gateway still cannot be told, the fault clears itself at its
    ``ttl_s`` and :class:`~somaagent.errors.FaultInjectionError` says when.
    """

    mode: Literal["local", "kubernetes"] = "local"

    def __init__(
        self,
        point: str,
        fault: FaultCreate,
        controller: FaultController,
        *,
        gateway: str = "the gateway",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.point = point
        self.fault = fault
        self.controller = controller
        self.gateway = gateway
        self._sleep = sleep
        self._set = False

    def describe(self) -> str:
        return f"{self.fault.describe()} at the {self.point} fault point of {self.gateway}"

    def setup(self) -> None:
        self.controller.get(self.point)

    def apply(self) -> None:
        self._set = True  # before the call: a set that timed out may still have landed
        self.controller.set(self.point, self.fault)

    def rollback(self) -> None:
        if not self._set:
            return
        _clear_with_retries(
            lambda: self.controller.clear(self.point),
            what=f"the {self.point} fault point of {self.gateway}",
            ttl_s=self.fault.ttl_s,
            sleep=self._sleep,
            target=f"{self.gateway} {self.point}",
        )
        self._set = False

    def teardown(self) -> None:
        self.rollback()


class RemoteProxyInjector:
    """A fault on a ``soma chaos proxy`` left running, set through its control API.

    The dependency already goes through the proxy, so the *before* check sees normal
    traffic; the fault clears itself at ``ttl_s`` if the run is killed outright.
    """

    mode: Literal["local", "kubernetes"] = "local"

    def __init__(
        self,
        faults: ProxyFaults,
        client: ProxyControlClient,
        *,
        ttl_s: float,
        dependency: str = "",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.faults = faults
        self.client = client
        self.ttl_s = ttl_s
        self.dependency = dependency
        self._sleep = sleep
        self._where = client.url
        self._set = False

    def describe(self) -> str:
        on = f" on {self.dependency}" if self.dependency else ""
        return f"{self.faults.describe()}{on} (proxy {self._where})"

    def setup(self) -> None:
        state = self.client.state()
        self._where = f"{state.get('listen')} → {state.get('upstream')}, control {self.client.url}"

    def apply(self) -> None:
        self._set = True
        self.client.apply(self.faults, ttl_s=self.ttl_s)

    def rollback(self) -> None:
        if not self._set:
            return
        _clear_with_retries(
            self.client.clear,
            what=f"the fault proxy at {self.client.url}",
            ttl_s=self.ttl_s,
            sleep=self._sleep,
            target=self.client.url,
        )
        self._set = False

    def teardown(self) -> None:
        try:
            self.rollback()
        finally:
            self.client.close()
