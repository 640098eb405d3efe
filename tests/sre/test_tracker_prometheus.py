"""The tracker against a real Prometheus scraping a real gateway, with real traffic.

Each test sends the same mix of requests twice: once before Prometheus first scrapes (so every
series it reads exists from the first scrape, in the same proportions) and once after. The
counts Prometheus extrapolates then keep the exact share of slow and failed requests, and the
statuses can be checked against hand-computed budgets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from somaagent.cli.slo import slo
from somaagent.gateway.metrics import GENAI_DURATION_BUCKETS
from somaagent.sre.slo import SLOSpec, SLOTracker, default_specs
from somaagent.sre.slo.rules import rule_files
from tests.sre._prometheus import wait_for
from tests.sre.conftest import FAKE_MODEL, SLOStack, slo_stacks

CHAT = "/v1/chat/completions"
# every request of the mix (Prometheus's own scrapes of /metrics aside)
MIX_COUNT = 'sum(http_server_request_duration_seconds_count{http_route!="/metrics"})'

pytestmark = pytest.mark.slow


def _chat(client: httpx.Client, text: str, *, stream: bool = False) -> int:
    body = {"model": FAKE_MODEL, "messages": [{"role": "user", "content": text}], "stream": stream}
    return client.post(CHAT, json=body).status_code


def mix(client: httpx.Client) -> None:
    """Ten chat requests, then two reads.

    Chat: 8 fast, 1 slow (a streamed answer, ~1.5 s: over 1 s, under the SLM SLO's 2 s) and
    1 failing upstream (a 502). Reads: ``/v1/models`` and an unknown route (a 404).
    """
    with ThreadPoolExecutor(2) as pool:
        slow = pool.submit(_chat, client, "[[slow]] a b c", stream=True)
        failed = pool.submit(_chat, client, "[[status:500]] boom")
        fast = [pool.submit(_chat, client, f"hello {i}") for i in range(8)]
        assert slow.result() == 200
        assert failed.result() == 502
        assert [f.result() for f in fast] == [200] * 8
    # Traffic the default SLOs see too: fast reads, an unknown route.
    assert client.get("/v1/models").status_code == 200
    assert client.get("/no/such/route").status_code == 404


def _spec(name: str, objective: str, sli: dict[str, object]) -> SLOSpec:
    return SLOSpec.model_validate(
        {"name": name, "service": "test", "objective": objective, "sli": sli}
    )


def _chat_latency(name: str, objective: str) -> SLOSpec:
    """Successful chat requests answered within 1 s (one in nine is slow here)."""
    return _spec(
        name,
        objective,
        {
            "kind": "latency",
            "metric": "http_server_request_duration_seconds",
            "threshold": 1,
            "selector": [f'http_route="{CHAT}"', 'http_response_status_code="200"'],
        },
    )


def _chat_availability(name: str, objective: str) -> SLOSpec:
    """Chat requests without a 5xx (one in ten fails here)."""
    return _spec(
        name,
        objective,
        {
            "kind": "ratio",
            "metric": "http_server_request_duration_seconds_count",
            "selector": [f'http_route="{CHAT}"'],
            "bad": ['http_response_status_code=~"5.."'],
        },
    )


@pytest.fixture(scope="module")
def stack(
    prometheus_bin: str, tmp_path_factory: pytest.TempPathFactory, fake_openai: Any
) -> Iterator[SLOStack]:
    """One stack for the read-only tests: the mix before the first scrape, then again."""
    with slo_stacks(tmp_path_factory.mktemp("slo"), fake_openai) as start:
        started = start(warmup=mix)
        started.wait_scraped(MIX_COUNT, 12)
        mix(started.gateway.client)
        started.wait_scraped(MIX_COUNT, 24)
        yield started


def test_statuses_follow_the_share_of_slow_and_failed_requests(stack: SLOStack) -> None:
    specs = [
        # 1 slow in 9 = 11.1% bad. Budget 12% -> 92.6% consumed: at risk.
        _chat_latency("latency-at-risk", "88"),
        # budget 25% -> 44.4% consumed: healthy.
        _chat_latency("latency-healthy", "75"),
        # budget 5% -> 222% consumed: violated.
        _chat_latency("latency-violated", "95"),
        # 1 failed in 10. Budget 10.5% -> 95.2% consumed: at risk.
        _chat_availability("availability-at-risk", "89.5"),
        # budget 0.1% -> 100x the budget: violated, and every burn-rate alert fires.
        _chat_availability("availability-violated", "99.9"),
    ]
    with SLOTracker(stack.prometheus.url, specs) as tracker:
        statuses = {s.name: s for s in tracker.status()}

    assert {name: s.status for name, s in statuses.items()} == {
        "latency-at-risk": "at-risk",
        "latency-healthy": "healthy",
        "latency-violated": "violated",
        "availability-at-risk": "at-risk",
        "availability-violated": "violated",
    }
    at_risk = statuses["latency-at-risk"]
    assert at_risk.error_ratio == pytest.approx(1 / 9, rel=1e-9)
    assert at_risk.sli == pytest.approx(100 * 8 / 9, rel=1e-9)
    assert at_risk.budget.consumed == pytest.approx((1 / 9) / 0.12, rel=1e-9)
    assert not any(b.firing for b in at_risk.burn_rates)
    assert at_risk.reason.endswith("of the error budget consumed")

    failing = statuses["availability-violated"]
    assert failing.error_ratio == pytest.approx(0.1, rel=1e-9)
    assert failing.budget.consumed == pytest.approx(100, rel=1e-9)
    assert failing.budget.remaining == pytest.approx(-99, rel=1e-9)
    assert [b.firing for b in failing.burn_rates] == [True, True, True, True]
    # increase() sees the 10 requests after the first scrape, plus some extrapolation
    assert failing.events is not None and 10 <= failing.events <= 20
    assert statuses["availability-at-risk"].budget.consumed == pytest.approx(0.1 / 0.105)


def test_default_slos_against_real_traffic(stack: SLOStack) -> None:
    with SLOTracker(stack.prometheus.url) as tracker:
        statuses = {s.name: s for s in tracker.status()}

    assert len(statuses) == len(default_specs()) == 9
    assert statuses["gateway-availability"].status == "healthy"  # every scrape found it up
    # 2 of 24 API requests failed (a 404 is the caller's, so good): far past a 0.1% budget.
    error_rate = statuses["gateway-error-rate"]
    assert error_rate.status == "violated"
    assert error_rate.error_ratio == pytest.approx(2 / 24, rel=1e-9)
    assert statuses["slm-availability"].status == "violated"  # 1 model call in 10 failed
    # Nothing calls the memory or policy routes here: no data, with no NaN anywhere.
    for name in ("memory-availability", "memory-latency", "constitution-availability"):
        status = statuses[name]
        assert status.status == "no-data", name
        assert status.sli is None and status.budget.consumed is None
        assert status.reason == "no events in the last 30d"
        assert "NaN" not in status.model_dump_json()
    assert 2.0 in GENAI_DURATION_BUCKETS  # the SLM latency SLO's threshold is a bucket edge
    assert statuses["slm-latency"].status == "healthy"


def test_budget_burned_over_a_time_range(stack: SLOStack) -> None:
    end = datetime.now(UTC)
    spec = _chat_availability("chat", "99")
    with SLOTracker(stack.prometheus.url, [spec]) as tracker:
        burned = tracker.burn("chat", end - timedelta(minutes=5), end)
        empty = tracker.burn("chat", end - timedelta(days=2), end - timedelta(days=1))
    assert burned.error_ratio == pytest.approx(0.1, rel=1e-9)
    assert burned.burn_rate == pytest.approx(10, rel=1e-9)
    assert burned.held is False
    # 10x the budget for 5 minutes of a 30-day window
    assert burned.budget_consumed == pytest.approx(10 * 300 / (30 * 86400), rel=1e-9)
    assert burned.queries and all("increase(" in q for q in burned.queries)
    assert empty.events is None and empty.held is None and empty.error is None


def test_generated_rules_load_and_record_in_prometheus(
    slo_stack: Callable[..., SLOStack], tmp_path_factory: pytest.TempPathFactory
) -> None:
    directory = tmp_path_factory.mktemp("rules")
    paths = []
    for name, text in rule_files(default_specs()).items():
        (directory / name).write_text(text, encoding="utf-8")
        paths.append(directory / name)
    stack = slo_stack(warmup=mix, rule_files=paths)
    rules = httpx.get(f"{stack.prometheus.url}/api/v1/rules", timeout=5).json()
    groups = rules["data"]["groups"]
    assert len(groups) == 18 and all(g["rules"] for g in groups)
    assert all(rule.get("health") != "err" for g in groups for rule in g["rules"])
    mix(stack.gateway.client)
    stack.wait_scraped(MIX_COUNT, 24)
    # 2 failed of 24 API requests against a 0.1% budget: the budget alert fires.
    alerts = f"{stack.prometheus.url}/api/v1/alerts"

    def exhausted() -> bool:
        firing = httpx.get(alerts, timeout=5).json()["data"]["alerts"]
        return any(
            a["labels"]
            == {**a["labels"], "alertname": "SLOErrorBudgetExhausted", "slo": "gateway-error-rate"}
            and a["state"] == "firing"
            for a in firing
        )

    wait_for(exhausted, what="SLOErrorBudgetExhausted for gateway-error-rate")
    consumed = stack.prometheus.value('slo:error_budget_consumed:ratio{slo="gateway-error-rate"}')
    assert consumed is not None and consumed > 1
    # No memory traffic: no recorded series at all, rather than NaN.
    assert stack.prometheus.query('slo:sli_error:ratio_rate5m{slo="memory-latency"}') == []


def test_budget_trend_and_html_report(stack: SLOStack, tmp_path: Path) -> None:
    end = datetime.now(UTC)
    with SLOTracker(stack.prometheus.url, [_chat_availability("chat", "75")]) as tracker:
        points = tracker.trend("chat", start=end - timedelta(minutes=2), end=end, points=25)
    assert len(points) == 25
    known = [p.remaining for p in points if p.remaining is not None]
    assert known, "the recent points have traffic"
    assert known[-1] == pytest.approx(1 - 0.1 / 0.25, rel=1e-9)  # 40% of the budget spent
    assert points[0].remaining is None  # before the gateway started: no data, not NaN

    report = tmp_path / "slo.html"
    result = CliRunner().invoke(
        slo, ["report", "--html", str(report), "--prometheus", stack.prometheus.url, "--hours", "1"]
    )
    assert result.exit_code == 0, result.output
    html = report.read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>")
    assert html.count("<svg") == 9 and "<polyline" in html
    assert (
        "<script" not in html
        and "http://" not in html.replace(stack.prometheus.url, "")[: html.find("<svg")]
    )
    assert "gateway-error-rate" in html and "violated" in html
