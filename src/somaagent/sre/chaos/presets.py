"""The seven preset experiments, one per fault type.

Selectors use the labels agreed in ``deploy/README.md`` (namespace ``somaagent``,
``app.kubernetes.io/name``/``component``). On one machine the model and vector-store faults
go to the gateway's fault points (``model``, ``vector-store``), so they work against the
embedded default; each also names a fault-proxy place for a networked model server (an
OpenAI-compatible one on port 8000) or vector store (Qdrant on 6333). The probes are the
default SLOs' SLIs
(:mod:`somaagent.sre.slo`) over a one-minute window, so a fault shows within a minute and a
recovery too. No traffic gives no sample, which a probe reports as "no data", never as a
violation.
"""

from __future__ import annotations

import functools
from datetime import timedelta

from somaagent.errors import ConfigurationError
from somaagent.sre.chaos.spec import (
    CpuStress,
    Experiment,
    Hypothesis,
    IoDelay,
    LocalTarget,
    MemoryStress,
    NetworkDelay,
    NetworkLoss,
    PodFailure,
    Probe,
    Target,
)
from somaagent.sre.slo.local import GATEWAY_JOB
from somaagent.sre.slo.promql import error_ratio_expr
from somaagent.sre.slo.spec import SLOSpec, default_specs

__all__ = ["LOCAL_WINDOW", "PRESETS", "get_preset", "preset_names", "with_window"]

JOB = GATEWAY_JOB
NAMESPACE = "somaagent"
WINDOW = "1m"
"""The probes' window: short, so that a fault shows within a minute, and a recovery too."""
LOCAL_WINDOW = "30s"
"""The window of a local run's probes: the local Prometheus scrapes every 5 s, so 30 s holds
six samples, and a recovery shows half a minute after the fault instead of a whole one."""


@functools.cache
def _slos() -> dict[str, SLOSpec]:
    return {spec.name: spec for spec in default_specs()}


def _labels(name: str, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/component": component}


def slo_probe(slo: str, floor: float, *, during: bool = True, window: str = WINDOW) -> Probe:
    """A probe on one of the default SLOs' SLI over ``window``: ``1 - error ratio``.

    No traffic gives no sample (the SLO queries divide by ``total > 0``), so "no data".
    """
    spec = _slos()[slo]
    return Probe(
        name=slo,
        query=f"1 - ({error_ratio_expr(spec, window)})".replace("\n", " "),
        op=">=",
        threshold=floor,
        during=during,
        description=f"{spec.description} At least {floor:.1%} over the last {window}.",
    )


def with_window(experiment: Experiment, window: str) -> Experiment:
    """``experiment`` with its SLO probes over ``window`` (other probes unchanged)."""

    def rewindowed(probe: Probe) -> Probe:
        if probe.name not in _slos() or probe.op != ">=":
            return probe
        if probe != slo_probe(probe.name, probe.threshold, during=probe.during):
            return probe  # a probe of a spec file's own, with the SLO's name: left as it is
        return slo_probe(probe.name, probe.threshold, during=probe.during, window=window)

    probes = [rewindowed(probe) for probe in experiment.hypothesis.probes]
    hypothesis = experiment.hypothesis.model_copy(update={"probes": probes})
    return experiment.model_copy(update={"hypothesis": hypothesis})


def _gateway_up() -> Probe:
    return Probe(
        name="gateway-up",
        query=f'max(up{{job="{JOB}"}})',
        op=">=",
        threshold=1,
        description="At least one gateway replica answers Prometheus's scrapes.",
    )


def _presets() -> dict[str, Experiment]:
    gateway = Target(namespace=NAMESPACE, labels=_labels("somaagent-gateway", "gateway"))
    slm = Target(namespace=NAMESPACE, labels=_labels("somaagent-slm", "slm"), mode="all")
    memory = Target(namespace=NAMESPACE, labels=_labels("somaagent-memory", "memory"), mode="all")
    qdrant = Target(
        namespace=NAMESPACE, labels=_labels("somaagent-qdrant", "vector-store"), mode="all"
    )
    clickhouse = Target(
        namespace=NAMESPACE, labels=_labels("somaagent-clickhouse", "analytics"), mode="all"
    )
    vector_store = LocalTarget(
        dependency="vector store",
        point="vector-store",
        listen="127.0.0.1:16333",
        upstream="127.0.0.1:6333",
    )
    experiments = [
        Experiment(
            name="gateway-pod-failure",
            description="One gateway replica fails; the others keep the API available.",
            service="gateway",
            duration=timedelta(minutes=2),
            target=gateway,
            fault=PodFailure(),
            hypothesis=Hypothesis(
                title="the API stays available while one replica is down",
                probes=[_gateway_up(), slo_probe("gateway-error-rate", 0.99)],
            ),
            local=LocalTarget(
                dependency="gateway", listen="127.0.0.1:18080", upstream="127.0.0.1:8080"
            ),
        ),
        Experiment(
            name="slm-service-failure",
            description="The SLM model server fails; the gateway falls back or fails cleanly.",
            service="slm",
            duration=timedelta(minutes=3),
            target=slm,
            fault=PodFailure(),
            hypothesis=Hypothesis(
                title="the gateway answers while the model server is down",
                probes=[
                    slo_probe("gateway-error-rate", 0.99),
                    slo_probe("slm-availability", 0.995, during=False),
                ],
            ),
            local=LocalTarget(
                dependency="SLM model server",
                point="model",
                listen="127.0.0.1:18000",
                upstream="127.0.0.1:8000",
            ),
        ),
        Experiment(
            name="memory-gateway-latency",
            description="100 ms more on every memory-gateway packet.",
            service="memory",
            duration=timedelta(minutes=5),
            target=memory,
            fault=NetworkDelay(latency=timedelta(milliseconds=100)),
            hypothesis=Hypothesis(
                title="memory stays available under latency, and fast again after",
                probes=[
                    slo_probe("memory-availability", 0.999),
                    slo_probe("memory-latency", 0.95, during=False),
                ],
            ),
            local=vector_store,
        ),
        Experiment(
            name="vector-store-packet-loss",
            description="10% of the vector store's packets are lost.",
            service="memory",
            duration=timedelta(minutes=3),
            target=qdrant,
            fault=NetworkLoss(loss=10),
            hypothesis=Hypothesis(
                title="memory search survives packet loss",
                probes=[
                    slo_probe("memory-availability", 0.99),
                    slo_probe("memory-latency", 0.95, during=False),
                ],
            ),
            local=vector_store,
        ),
        Experiment(
            name="gateway-cpu-stress",
            description="Two workers load the gateway's CPUs to 80%.",
            service="gateway",
            duration=timedelta(minutes=10),
            target=gateway,
            fault=CpuStress(load=80, workers=2),
            hypothesis=Hypothesis(
                title="the gateway keeps its latency under CPU pressure",
                probes=[
                    slo_probe("gateway-error-rate", 0.999),
                    slo_probe("gateway-latency", 0.95),
                ],
            ),
        ),
        Experiment(
            name="slm-memory-stress",
            description="A worker holds 70% of the SLM server's memory.",
            service="slm",
            duration=timedelta(minutes=5),
            target=slm,
            fault=MemoryStress(percent=70),
            hypothesis=Hypothesis(
                title="model calls keep succeeding under memory pressure",
                probes=[
                    slo_probe("slm-availability", 0.995),
                    slo_probe("slm-latency", 0.99, during=False),
                ],
            ),
        ),
        Experiment(
            name="clickhouse-io-delay",
            description="50 ms on every ClickHouse file-system call.",
            service="gateway",
            duration=timedelta(minutes=5),
            target=clickhouse,
            fault=IoDelay(
                delay=timedelta(milliseconds=50),
                volume_path="/var/lib/clickhouse",
                path="/var/lib/clickhouse/**/*",
            ),
            hypothesis=Hypothesis(
                title="analytics writes stay off the request path",
                probes=[
                    slo_probe("gateway-error-rate", 0.999),
                    slo_probe("gateway-latency", 0.95),
                ],
            ),
            local=LocalTarget(
                dependency="ClickHouse (HTTP)", listen="127.0.0.1:18123", upstream="127.0.0.1:8123"
            ),
        ),
    ]
    return {experiment.name.replace("-", "_"): experiment for experiment in experiments}


PRESETS: dict[str, Experiment] = _presets()
"""The presets by name (``gateway_pod_failure``, ...)."""


def preset_names() -> list[str]:
    """The preset names, in a stable order."""
    return list(PRESETS)


def get_preset(name: str) -> Experiment:
    """A preset by name (``-`` and ``_`` are interchangeable).

    Raises:
        ConfigurationError: there is no such preset (the message lists them).
    """
    key = name.replace("-", "_")
    if key not in PRESETS:
        raise ConfigurationError(
            f"no chaos preset {name!r}; choose one of: {', '.join(preset_names())}"
        )
    return PRESETS[key]
