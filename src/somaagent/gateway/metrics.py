"""Prometheus metrics, named after the OpenTelemetry semantic conventions.

* ``http_server_request_duration_seconds`` (``http.server.request.duration``) by method,
  route template and status code;
* ``gen_ai_client_token_usage`` (``gen_ai.client.token.usage``) by operation, provider,
  model and token type (``input`` / ``output``);
* ``gen_ai_client_operation_duration_seconds`` (``gen_ai.client.operation.duration``) by
  operation, provider, model and error type (empty on success);
* ``soma_chaos_fault_active`` (1 while a chaos fault is on a fault point) and
  ``soma_chaos_fault_effects_total`` (calls a fault delayed, lost, aborted, stalled or timed
  out), by point: the evidence of what a chaos experiment did.

Each app owns its registry, so several apps (tests, replicas in one process) never clash.

The recording methods keep each instrument's child per label values: ``labels()`` validates
its arguments and takes a lock on every call, and these instruments never remove a child, so
a child looked up once stays the one to observe.

Series an SLO counts as bad are made at zero the first time their route or model is seen (the
5xx statuses of a route; every provider error type of a model): a series born at its first
event hides that event from ``rate()`` and ``increase()``, so a short burst of failures would
otherwise never reach an error budget.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from somaagent import errors

# OTel's recommended boundaries for http.server.request.duration, plus the SLO edges.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.2, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576)
GENAI_DURATION_BUCKETS = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2,  # the SLM latency SLO's threshold: 99% of calls under 2 s
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)

CONTENT_TYPE = CONTENT_TYPE_LATEST

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""The methods that keep their own ``http_request_method`` value; any other (PROPFIND, LOCK,
a made-up word) is counted as ``_OTHER``, as OpenTelemetry's HTTP conventions say, so a client
cannot create series at will."""

OTHER_METHOD = "_OTHER"

SERVER_ERROR_STATUSES = (500, 502, 503, 504)
"""The 5xx statuses the gateway answers, made at zero for each route when it is first seen."""


def _provider_error_types() -> tuple[str, ...]:
    found: list[str] = []
    pending: list[type[errors.ProviderError]] = [errors.ProviderError]
    while pending:
        cls = pending.pop()
        if cls is not errors.EmbeddingError:
            found.append(cls.__name__)
        pending.extend(cls.__subclasses__())
    return (*sorted(found), "error")


MODEL_ERROR_TYPES = _provider_error_types()
"""The ``error_type`` values of failed model calls (the provider error classes, and ``error``
when a fallback attempt did not say), made at zero for each model when it is first seen."""


class Metrics:
    """The gateway's instruments, registered in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_duration = Histogram(
            "http_server_request_duration_seconds",
            "Duration of HTTP server requests.",
            ["http_request_method", "http_route", "http_response_status_code"],
            buckets=HTTP_BUCKETS,
            registry=self.registry,
        )
        self.token_usage = Histogram(
            "gen_ai_client_token_usage",
            "Number of input and output tokens used per model call.",
            [
                "gen_ai_operation_name",
                "gen_ai_provider_name",
                "gen_ai_request_model",
                "gen_ai_token_type",
            ],
            buckets=TOKEN_BUCKETS,
            registry=self.registry,
        )
        self.operation_duration = Histogram(
            "gen_ai_client_operation_duration_seconds",
            "Duration of model calls.",
            ["gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "error_type"],
            buckets=GENAI_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.fault_active = Gauge(
            "soma_chaos_fault_active",
            "1 while a chaos fault is on the fault point.",
            ["point"],
            registry=self.registry,
        )
        self.fault_effects = Counter(
            "soma_chaos_fault_effects",
            "Calls a chaos fault acted on, by what it did.",
            ["point", "effect"],
            registry=self.registry,
        )
        self._http_children: dict[tuple[str, str, int], Histogram] = {}
        self._duration_children: dict[tuple[str, str, str, str], Histogram] = {}
        self._token_children: dict[tuple[str, str, str, str], Histogram] = {}

    def observe_http(self, method: str, route: str, status: int, seconds: float) -> None:
        """Record one HTTP request's duration by method, route template and status code.

        ``route`` must come from a bounded set (the app's templates, or one value for "no
        route"); an unknown ``method`` is recorded as :data:`OTHER_METHOD`.
        """
        if method not in HTTP_METHODS:
            method = OTHER_METHOD
        key = (method, route, status)
        child = self._http_children.get(key)
        if child is None:
            for failed in SERVER_ERROR_STATUSES:
                if (method, route, failed) not in self._http_children:
                    made = self.http_duration.labels(method, route, str(failed))
                    self._http_children[(method, route, failed)] = made
            child = self._http_children.get(key)
            if child is None:
                child = self.http_duration.labels(method, route, str(status))
                self._http_children[key] = child
        child.observe(seconds)

    def record_model_call(
        self,
        *,
        provider: str,
        model: str,
        seconds: float,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        error_type: str = "",
        operation: str = "chat",
    ) -> None:
        """Record one model call's duration, and its token counts when known."""
        key = (operation, provider, model, error_type)
        child = self._duration_children.get(key)
        if child is None:
            for kind in ("", *MODEL_ERROR_TYPES):
                if (operation, provider, model, kind) not in self._duration_children:
                    made = self.operation_duration.labels(operation, provider, model, kind)
                    self._duration_children[(operation, provider, model, kind)] = made
            child = self._duration_children.get(key)
            if child is None:
                child = self._duration_children[key] = self.operation_duration.labels(*key)
        child.observe(seconds)
        if input_tokens is not None:
            self._tokens(operation, provider, model, "input").observe(input_tokens)
        if output_tokens is not None:
            self._tokens(operation, provider, model, "output").observe(output_tokens)

    def _tokens(self, operation: str, provider: str, model: str, kind: str) -> Histogram:
        key = (operation, provider, model, kind)
        child = self._token_children.get(key)
        if child is None:
            child = self._token_children[key] = self.token_usage.labels(*key)
        return child

    def fault_changed(self, point: str, on: bool) -> None:
        """A fault was put on (or taken off) a fault point."""
        self.fault_active.labels(point).set(1 if on else 0)

    def fault_acted(self, point: str, effect: str) -> None:
        """A fault delayed, lost, aborted, stalled or timed out one call."""
        self.fault_effects.labels(point, effect).inc()

    def render(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)
