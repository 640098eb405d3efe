"""The ways a fault is put in place: a fault point inside the gateway, a fault proxy or stress
workers on this machine, or a Chaos Mesh object in a cluster. Each follows
:class:`~somaagent.sre.chaos.runner.Injector`.

On one machine a network, pod or I/O fault goes, by default, to the experiment's fault point
in the gateway when it names one (the embedded vector store and models run in the gateway's
process, with no network hop to fault), else to a fault proxy in front of the dependency.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any, Literal

from somaagent.errors import ConfigurationError
from somaagent.sre.chaos.crds import CrdSchemas
from somaagent.sre.chaos.kube import ChaosMeshClient
from somaagent.sre.chaos.manifest import render_manifest
from somaagent.sre.chaos.proxy import ProxyFaults, ThreadedProxy, parse_host_port
from somaagent.sre.chaos.proxy_control import ProxyControlClient
from somaagent.sre.chaos.remote import (
    FAULT_GRACE,
    FaultController,
    PointInjector,
    RemoteProxyInjector,
    point_fault,
)
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
    lifetime = (duration or experiment.duration) + FAULT_GRACE
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
