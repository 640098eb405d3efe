"""The seven preset experiments, one per fault type.

Selectors use the labels agreed in ``deploy/README.md`` (namespace ``somaagent``,
``app.kubernetes.io/name``/``component``); the probes read the gateway's own metrics under the
``somaagent-gateway`` scrape job over a one-minute window, so a fault shows within a minute and
a recovery too. No traffic makes a ratio NaN, which a probe reports as "no data", never as a
violation.
"""

from __future__ import annotations

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

__all__ = ["PRESETS", "get_preset", "preset_names"]

JOB = "somaagent-gateway"
NAMESPACE = "somaagent"
WINDOW = "1m"

_HTTP = "http_server_request_duration_seconds"
_GENAI = "gen_ai_client_operation_duration_seconds"
# Route templates as the gateway labels them (``http_route``).
GATEWAY_ROUTES = "/v1/.*"
SLM_ROUTES = "/v1/chat/completions|/v1/conversations/.*/messages"
MEMORY_ROUTES = "/v1/memory.*"


def _labels(name: str, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/component": component}


def _sel(routes: str, extra: str = "") -> str:
    return f'job="{JOB}",http_route=~"{routes}"{extra}'


def http_availability(routes: str) -> str:
    """PromQL: the share of requests on ``routes`` that did not fail with a 5xx."""
    not_5xx = _sel(routes, ',http_response_status_code!~"5.."')
    good = f"sum(rate({_HTTP}_count{{{not_5xx}}}[{WINDOW}]))"
    total = f"sum(rate({_HTTP}_count{{{_sel(routes)}}}[{WINDOW}]))"
    return f"{good} / {total}"


def http_latency(routes: str, le: str) -> str:
    """PromQL: the share of requests on ``routes`` answered within ``le`` seconds."""
    within = _sel(routes, f',le="{le}"')
    fast = f"sum(rate({_HTTP}_bucket{{{within}}}[{WINDOW}]))"
    total = f"sum(rate({_HTTP}_count{{{_sel(routes)}}}[{WINDOW}]))"
    return f"{fast} / {total}"


def model_call_success() -> str:
    """PromQL: the share of model calls that ended without an error."""
    good = f'sum(rate({_GENAI}_count{{job="{JOB}",error_type=""}}[{WINDOW}]))'
    total = f'sum(rate({_GENAI}_count{{job="{JOB}"}}[{WINDOW}]))'
    return f"{good} / {total}"


def _gateway_up() -> Probe:
    return Probe(
        name="gateway-scraped",
        query=f'max(up{{job="{JOB}"}})',
        op=">=",
        threshold=1,
        description="at least one gateway replica answers Prometheus",
    )


def _availability(name: str, routes: str, floor: float, *, during: bool = True) -> Probe:
    return Probe(
        name=name,
        query=http_availability(routes),
        threshold=floor,
        during=during,
        description=f"at least {floor:.1%} of requests succeed",
    )


def _latency(name: str, routes: str, le: str, share: float, *, during: bool = True) -> Probe:
    return Probe(
        name=name,
        query=http_latency(routes, le),
        threshold=share,
        during=during,
        description=f"at least {share:.0%} of requests within {float(le) * 1000:.0f} ms",
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
        dependency="vector store (Qdrant)", listen="127.0.0.1:16333", upstream="127.0.0.1:6333"
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
                probes=[
                    _gateway_up(),
                    _availability("gateway-availability", GATEWAY_ROUTES, 0.99),
                ],
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
                    _availability("gateway-availability", GATEWAY_ROUTES, 0.99),
                    Probe(
                        name="slm-success",
                        query=model_call_success(),
                        threshold=0.995,
                        during=False,
                        description="at least 99.5% of model calls succeed",
                    ),
                ],
            ),
            local=LocalTarget(
                dependency="SLM model server (OpenAI-compatible)",
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
                    _availability("memory-availability", MEMORY_ROUTES, 0.999),
                    _latency("memory-latency", MEMORY_ROUTES, "0.1", 0.95, during=False),
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
                    _availability("memory-availability", MEMORY_ROUTES, 0.99),
                    _latency("memory-latency", MEMORY_ROUTES, "0.1", 0.95, during=False),
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
                    _availability("gateway-availability", GATEWAY_ROUTES, 0.999),
                    _latency("gateway-latency", GATEWAY_ROUTES, "0.2", 0.95),
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
                    Probe(
                        name="slm-success",
                        query=model_call_success(),
                        threshold=0.995,
                        description="at least 99.5% of model calls succeed",
                    ),
                    _latency("slm-latency", SLM_ROUTES, "2.5", 0.99, during=False),
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
                    _availability("gateway-availability", GATEWAY_ROUTES, 0.999),
                    _latency("gateway-latency", GATEWAY_ROUTES, "0.2", 0.95),
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
