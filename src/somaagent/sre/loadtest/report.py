"""Turn k6's JSON summary (``--summary-export``) into a report people can read.

In that summary a threshold's value is ``true`` when it was *crossed*, and ``http_req_failed``
counts failed requests as ``passes`` (it is a rate of failures); both are read the right way
round here.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from somaagent.sre.loadtest.k6 import K6Run
from somaagent.sre.loadtest.spec import LoadTest

__all__ = ["EndpointStats", "LoadReport", "ThresholdResult", "TrendStats", "build_report"]

_SUBMETRIC = re.compile(r"^http_req_duration\{name:(?P<name>[^}]+)\}$")


class TrendStats(BaseModel):
    """Latency figures in milliseconds."""

    avg: float
    min: float
    med: float
    max: float
    p90: float
    p95: float
    p99: float

    @classmethod
    def from_metric(cls, metric: dict[str, Any]) -> TrendStats:
        """Read k6's trend values (``p(95)`` and so on)."""
        return cls(
            avg=float(metric.get("avg", 0)),
            min=float(metric.get("min", 0)),
            med=float(metric.get("med", 0)),
            max=float(metric.get("max", 0)),
            p90=float(metric.get("p(90)", 0)),
            p95=float(metric.get("p(95)", 0)),
            p99=float(metric.get("p(99)", 0)),
        )


class ThresholdResult(BaseModel):
    """One threshold and whether it held."""

    metric: str
    expression: str
    ok: bool


class EndpointStats(BaseModel):
    """One endpoint's latency (its ``name`` tag)."""

    name: str
    latency: TrendStats


class LoadReport(BaseModel):
    """The result of a load test."""

    test: str
    profile: str
    base_url: str
    started_at: datetime
    finished_at: datetime
    exit_code: int
    requests: int
    request_rate: float
    failure_rate: float
    failed_requests: int
    checks_passed: int
    checks_failed: int
    iterations: int
    max_vus: int
    latency: TrendStats | None
    endpoints: list[EndpointStats]
    thresholds: list[ThresholdResult]
    passed: bool


def _count(metric: dict[str, Any] | None, key: str = "count") -> float:
    return float((metric or {}).get(key, 0) or 0)


def build_report(test: LoadTest, run: K6Run, *, base_url: str) -> LoadReport:
    """A :class:`LoadReport` from one k6 run of ``test``."""
    metrics: dict[str, dict[str, Any]] = run.summary.get("metrics", {})
    duration = metrics.get("http_req_duration")
    failed = metrics.get("http_req_failed") or {}
    checks = metrics.get("checks") or {}
    thresholds = [
        ThresholdResult(metric=name, expression=expression, ok=not crossed)
        for name, metric in sorted(metrics.items())
        for expression, crossed in sorted((metric.get("thresholds") or {}).items())
    ]
    endpoints = [
        EndpointStats(name=match.group("name"), latency=TrendStats.from_metric(metric))
        for name, metric in sorted(metrics.items())
        if (match := _SUBMETRIC.match(name)) and "avg" in metric
    ]
    return LoadReport(
        test=test.name,
        profile=test.profile.name,
        base_url=base_url,
        started_at=run.started_at,
        finished_at=run.finished_at,
        exit_code=run.exit_code,
        requests=int(_count(metrics.get("http_reqs"))),
        request_rate=_count(metrics.get("http_reqs"), "rate"),
        failure_rate=float(failed.get("value", 0) or 0),
        failed_requests=int(failed.get("passes", 0) or 0),
        checks_passed=int(checks.get("passes", 0) or 0),
        checks_failed=int(checks.get("fails", 0) or 0),
        iterations=int(_count(metrics.get("iterations"))),
        max_vus=int(_count(metrics.get("vus_max"), "max")),
        latency=TrendStats.from_metric(duration) if duration else None,
        endpoints=endpoints,
        thresholds=thresholds,
        passed=run.exit_code == 0 and all(t.ok for t in thresholds),
    )


def render_text(report: LoadReport) -> list[str]:
    """The report as plain lines (the CLI adds colour on a terminal)."""
    seconds = (report.finished_at - report.started_at).total_seconds()
    lines = [
        f"{report.test} ({report.profile} profile) against {report.base_url}: "
        f"{'PASSED' if report.passed else 'FAILED'} in {seconds:.1f}s",
        f"requests: {report.requests} ({report.request_rate:.1f}/s), "
        f"failed: {report.failed_requests} ({report.failure_rate:.2%}), "
        f"iterations: {report.iterations}, peak VUs: {report.max_vus}",
        f"checks: {report.checks_passed} passed, {report.checks_failed} failed",
    ]
    if report.latency is not None:
        rows = [("all", report.latency)] + [(e.name, e.latency) for e in report.endpoints]
        width = max(12, *(len(name) for name, _ in rows))  # endpoint names are never cut
        header = "".join(f"{label:>8}" for label in ("avg", "med", "p90", "p95", "p99", "max"))
        lines.append(f"{'latency (ms)':<{width + 2}}{header}")
        for name, stats in rows:
            lines.append(
                f"  {name:<{width}}"
                + "".join(
                    f"{value:>8.1f}"
                    for value in (stats.avg, stats.med, stats.p90, stats.p95, stats.p99, stats.max)
                )
            )
    lines.append("thresholds:")
    for threshold in report.thresholds:
        if threshold.expression == "max>=0":
            continue  # tracking only
        mark = "ok  " if threshold.ok else "FAIL"
        lines.append(f"  {mark} {threshold.metric}: {threshold.expression}")
    return lines
