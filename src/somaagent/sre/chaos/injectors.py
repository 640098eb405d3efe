"""The ways a fault is put in place: a fault proxy or stress workers on this machine, or a
Chaos Mesh object in a cluster. Each follows :class:`~somaagent.sre.chaos.runner.Injector`.
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
    "KubernetesInjector",
    "ProxyInjector",
    "StressInjector",
    "local_faults",
    "local_injector",
]

# Safety margin on a stress worker's own deadline, past the planned fault.
_STRESS_GRACE = timedelta(seconds=30)


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
    listen: str | None = None,
    upstream: str | None = None,
    memory_cap: int = DEFAULT_MEMORY_CAP,
    max_workers: int | None = None,
) -> ProxyInjector | StressInjector:
    """The local stand-in for ``experiment``'s fault.

    Args:
        duration: how long the fault will be on (bounds stress workers' own deadline).
        listen: where the proxy listens (default: the experiment's ``local.listen``).
        upstream: the dependency (default: the experiment's ``local.upstream``).
        memory_cap: the most bytes a memory stress takes in all.
        max_workers: the most stress workers (default: this machine's CPU count).
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
        raise ConfigurationError(f"{experiment.name} has no `local` section for its proxy")
    return ProxyInjector(
        local_faults(experiment),
        listen=listen or local.listen,
        upstream=upstream or local.upstream,
        dependency=local.dependency,
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
