"""Check a steady-state hypothesis against Prometheus.

Each probe is an instant query. A value that compares well is ``held``; one that does not is
``violated``; an empty result or NaN (a ratio over no traffic) is ``no_data``, never a
violation; an unreachable Prometheus or a query it refuses is ``error`` with the reason. A
phase check never raises for those: the run goes on and the report says what was seen.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict

from somaagent.errors import ConfigurationError, PrometheusError
from somaagent.sre.chaos.spec import Hypothesis, Probe
from somaagent.sre.slo.prometheus import PrometheusClient

__all__ = [
    "Phase",
    "PhaseCheck",
    "ProbeResult",
    "ProbeStatus",
    "PrometheusError",
    "PrometheusHTTP",
    "Querier",
    "check_phase",
    "summarize",
]

Phase = Literal["before", "during", "after"]
ProbeStatus = Literal["held", "violated", "no_data", "error"]


class Querier(Protocol):
    """Something that runs an instant PromQL query and returns its first value.

    ``None`` means no data (an empty result). Failures raise :class:`PrometheusError`.
    """

    def __call__(self, expr: str) -> float | None: ...


class PrometheusHTTP:
    """A :class:`Querier` over Prometheus's HTTP API (:class:`PrometheusClient`).

    Args:
        base_url: Prometheus's URL, such as ``http://127.0.0.1:9090``.
        timeout: seconds per query.

    Raises:
        ConfigurationError: ``base_url`` is not an http(s) URL.
    """

    def __init__(self, base_url: str, *, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        try:
            self._client = PrometheusClient(self.base_url, timeout=timeout)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None

    def __call__(self, expr: str) -> float | None:
        samples = self._client.query(expr)
        return samples[0].value if samples else None

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


class ProbeResult(BaseModel):
    """What one probe saw at one moment."""

    model_config = ConfigDict(frozen=True)

    probe: str
    query: str
    op: str
    threshold: float
    value: float | None
    status: ProbeStatus
    required: bool
    at: datetime
    error: str | None = None


class PhaseCheck(BaseModel):
    """The probes of one check in one phase (several checks are made during a fault)."""

    model_config = ConfigDict(frozen=True)

    phase: Phase
    at: datetime
    results: list[ProbeResult]

    @property
    def held(self) -> bool | None:
        """True when every required probe held, False when one was violated, else None."""
        required = [result for result in self.results if result.required]
        if any(result.status == "violated" for result in required):
            return False
        if all(result.status == "held" for result in required):
            return True
        return None


def _probe(probe: Probe, querier: Querier, *, required: bool) -> ProbeResult:
    def result(value: float | None, status: ProbeStatus, error: str | None = None) -> ProbeResult:
        return ProbeResult(
            probe=probe.name,
            query=probe.query,
            op=probe.op,
            threshold=probe.threshold,
            value=value,
            status=status,
            required=required,
            at=datetime.now(UTC),
            error=error,
        )

    try:
        value = querier(probe.query)
    except PrometheusError as exc:
        return result(None, "error", str(exc))
    if value is None or not math.isfinite(value):
        return result(None, "no_data")
    return result(value, "held" if probe.holds(value) else "violated")


def check_phase(hypothesis: Hypothesis, phase: Phase, querier: Querier) -> PhaseCheck:
    """Run every probe once. During a fault, probes with ``during=False`` are not required."""
    results = [
        _probe(probe, querier, required=phase != "during" or probe.during)
        for probe in hypothesis.probes
    ]
    return PhaseCheck(phase=phase, at=datetime.now(UTC), results=results)


def summarize(checks: Iterable[PhaseCheck]) -> bool | None:
    """Across checks: False if any was violated, True if all held, else None (no data)."""
    verdicts = [check.held for check in checks]
    if any(verdict is False for verdict in verdicts):
        return False
    if verdicts and all(verdict is True for verdict in verdicts):
        return True
    return None
