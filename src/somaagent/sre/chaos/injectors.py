"""The ways a fault is put in place: a fault point inside the gateway, a fault proxy or stress
workers on this machine, or a Chaos Mesh object in a cluster. Each follows
:class:`~somaagent.sre.chaos.runner.Injector`.

On one machine a network, pod or I/O fault goes, by default, to the experiment's fault point
in the gateway when it names one (the embedded vector store and models run in the gateway's
process, with no network hop to fault), else to a fault proxy in front of the dependency.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from typing import Any, Literal, Protocol

from somaagent.errors import ConfigurationError, FaultInjectionError, SomaAgentError
from somaagent.sre.chaos.crds import CrdSchemas
from somaagent.sre.chaos.kube import ChaosMeshClient
from somaagent.sre.chaos.manifest import render_manifest
from somaagent.sre.chaos.proxy import ProxyFaults, ThreadedProxy, parse_host_port
from somaagent.sre.chaos.proxy_control import ProxyControlClient
from somaagent.sre.chaos.spec import (
    CpuStress,
    Experiment,
    IoDelay,
    MemoryStress,
    NetworkDelay,
    NetworkLoss,
    NetworkPartition,
    PodFailure,
)
from somaagent.sre.chaos.stress import DEFAULT_MEMORY_CAP, Stress, memory_bytes
from somaagent.types import FaultCreate, FaultPoint

__all__ = [
    "FaultController",
    "KubernetesInjector",
    "PointInjector",
    "ProxyInjector",
    "RemoteProxyInjector",
    "StressInjector",
    "Via",
    "local_faults",
    "local_injector",
    "point_fault",
]

# Safety margin on a local fault's own deadline (a stress worker's, a fault point's TTL),
# past the planned fault: it ends by itself even if the run is killed outright.
_STRESS_GRACE = timedelta(seconds=30)
_ROLLBACK_TRIES = 3

Via = Literal["point", "proxy"]
"""Where a local network, pod or I/O fault goes: a gateway fault point, or a fault proxy."""


def local_faults(experiment: Experiment) -> ProxyFaults:
    """The proxy faults that stand in for a network, pod or I/O fault on one machine.

    A failed pod resets connections; a partition stalls them; a network or I/O delay delays
    the dependency's answers; packet loss costs retransmission time.
    """
    fault = experiment.fault
    if isinstance(fault, NetworkDelay):
        return ProxyFaults(
            latency_ms=fault.latency.total_seconds() * 1000,
            jitter_ms=fault.jitter.total_seconds() * 1000,
        )
    if isinstance(fault, NetworkLoss):
        return ProxyFaults(loss_percent=fault.loss)
    if isinstance(fault, NetworkPartition):
        return ProxyFaults(partition=True)
    if isinstance(fault, IoDelay):
        return ProxyFaults(latency_ms=fault.delay.total_seconds() * 1000)
    if isinstance(fault, PodFailure):
        return ProxyFaults(reset=True)
    raise ConfigurationError(f"a {fault.type} experiment has no proxy fault")


def point_fault(experiment: Experiment, *, duration: timedelta | None = None) -> FaultCreate:
    """The gateway fault-point fault that stands in for ``experiment``'s fault.

    A delay delays each call, packet loss costs retransmission time, a partition stalls calls,
    a failed pod fails them with the dependency's "unavailable" error. The fault clears itself
    30 s after the planned end (``ttl_s``), so a run that is killed leaves nothing behind.
    """
    fault = experiment.fault
    ttl = ((duration or experiment.duration) + _STRESS_GRACE).total_seconds()
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


def _clear_with_retries(clear: Any, *, what: str, ttl_s: float, sleep: Any, target: str) -> None:
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
        sleep: Any = time.sleep,
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


class ProxyInjector:
    """A fault proxy between a client and a dependency; the fault is the proxy's setting.

    The proxy forwards cleanly from ``setup`` (so the *before* check sees normal traffic) until
    ``teardown``; ``apply`` and ``rollback`` switch the fault on and off.
    """

    mode: Literal["local", "kubernetes"] = "local"

    def __init__(
        self, faults: ProxyFaults, *, listen: str, upstream: str, dependency: str = ""
    ) -> None:
        self.faults = faults
        self.listen = listen
        self.upstream = upstream
        self.dependency = dependency
        self.proxy: ThreadedProxy | None = None

    def describe(self) -> str:
        where = f" on {self.dependency}" if self.dependency else ""
        return f"{self.faults.describe()}{where} (proxy {self.listen} → {self.upstream})"

    def setup(self) -> None:
        self.proxy = ThreadedProxy(
            parse_host_port(self.upstream), listen=parse_host_port(self.listen)
        )
        try:
            self.proxy.__enter__()
        except OSError as exc:
            self.proxy = None
            raise ConfigurationError(f"cannot listen on {self.listen}: {exc.strerror}") from exc
        host, port = self.proxy.address
        self.listen = f"{host}:{port}"

    def apply(self) -> None:
        if self.proxy is not None:
            self.proxy.apply(self.faults)

    def rollback(self) -> None:
        if self.proxy is not None:
            self.proxy.clear()

    def teardown(self) -> None:
        if self.proxy is not None:
            self.proxy.close()
            self.proxy = None


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
        sleep: Any = time.sleep,
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


class StressInjector:
    """CPU or memory stress workers on this machine."""

    mode: Literal["local", "kubernetes"] = "local"

    def __init__(self, stress: Stress) -> None:
        self.stress = stress

    def describe(self) -> str:
        return f"{self.stress.describe()} on this machine"

    def setup(self) -> None:
        return None

    def apply(self) -> None:
        self.stress.start()

    def rollback(self) -> None:
        self.stress.stop()

    def teardown(self) -> None:
        self.stress.stop()


def local_injector(
    experiment: Experiment,
    *,
    duration: timedelta | None = None,
    via: Via | None = None,
    controller: FaultController | None = None,
    gateway: str = "the gateway",
    listen: str | None = None,
    upstream: str | None = None,
    proxy_control: str | None = None,
    memory_cap: int = DEFAULT_MEMORY_CAP,
    max_workers: int | None = None,
) -> PointInjector | ProxyInjector | RemoteProxyInjector | StressInjector:
    """The local stand-in for ``experiment``'s fault.

    Args:
        duration: how long the fault will be on (bounds the fault's own deadline).
        via: ``point`` or ``proxy`` for a network, pod or I/O fault; by default the proxy
            when ``listen``, ``upstream`` or ``proxy_control`` is given, else the
            experiment's fault point if it names one, else its proxy.
        controller: sets fault-point faults (``client.faults`` of an operator's SDK client).
        gateway: the gateway's URL, for descriptions.
        listen: where the proxy listens (default: the experiment's ``local.listen``).
        upstream: the dependency (default: the experiment's ``local.upstream``).
        proxy_control: the control API of a ``soma chaos proxy`` already running in front
            of the dependency, to fault instead of starting a proxy for the run.
        memory_cap: the most bytes a memory stress takes in all.
        max_workers: the most stress workers (default: this machine's CPU count).

    Raises:
        ConfigurationError: the experiment has no place for the chosen way, or a fault point
            was chosen without a controller.
    """
    fault = experiment.fault
    lifetime = (duration or experiment.duration) + _STRESS_GRACE
    workers_cap = max_workers or os.cpu_count() or 1
    if isinstance(fault, CpuStress):
        workers = min(fault.workers, workers_cap)
        return StressInjector(Stress("cpu", fault.load, workers=workers, duration=lifetime))
    if isinstance(fault, MemoryStress):
        workers = min(fault.workers, workers_cap)
        per_worker = memory_bytes(fault.percent, cap=memory_cap) // workers
        return StressInjector(Stress("memory", per_worker, workers=workers, duration=lifetime))
    local = experiment.local
    if local is None:  # the spec's validator makes this unreachable
        raise ConfigurationError(f"{experiment.name} has no `local` section for its fault")
    proxied = listen or upstream or proxy_control
    chosen = via or ("proxy" if proxied or local.point is None else "point")
    if chosen == "point":
        if local.point is None:
            raise ConfigurationError(
                f"{experiment.name} names no gateway fault point: run it through a fault proxy"
            )
        if controller is None:
            raise ConfigurationError(
                f"{experiment.name} puts its fault on the gateway's {local.point} fault point: "
                "it needs the gateway's URL and an operator's admin key"
            )
        return PointInjector(
            local.point, point_fault(experiment, duration=duration), controller, gateway=gateway
        )
    if proxy_control is not None:
        return RemoteProxyInjector(
            local_faults(experiment),
            ProxyControlClient(proxy_control),
            ttl_s=lifetime.total_seconds(),
            dependency=local.dependency,
        )
    listen = listen or local.listen
    upstream = upstream or local.upstream
    if listen is None or upstream is None:
        raise ConfigurationError(
            f"{experiment.name} has no fault proxy place: give the proxy's listen and upstream "
            "addresses (--listen HOST:PORT --upstream HOST:PORT)"
        )
    return ProxyInjector(
        local_faults(experiment), listen=listen, upstream=upstream, dependency=local.dependency
    )


class KubernetesInjector:
    """A Chaos Mesh object: created to inject, deleted to roll back."""

    mode: Literal["local", "kubernetes"] = "kubernetes"

    def __init__(
        self,
        experiment: Experiment,
        client: ChaosMeshClient,
        *,
        schemas: CrdSchemas | None = None,
        duration: timedelta | None = None,
    ) -> None:
        if duration is not None:
            experiment = experiment.model_copy(update={"duration": duration})
        self.manifest: dict[str, Any] = render_manifest(experiment, schemas=schemas)
        self.client = client
        self._created = False

    @property
    def _key(self) -> tuple[str, str, str]:
        metadata = self.manifest["metadata"]
        return str(self.manifest["kind"]), str(metadata["name"]), str(metadata["namespace"])

    def describe(self) -> str:
        kind, name, namespace = self._key
        return f"{kind} {namespace}/{name}"

    def setup(self) -> None:
        return None

    def apply(self) -> None:
        self.client.create(self.manifest)
        self._created = True

    def rollback(self) -> None:
        if self._created:
            self.client.delete(*self._key)
            self._created = False

    def teardown(self) -> None:
        self.rollback()
