"""k6 load tests: scripts for every preset pass `k6 inspect` with p95/p99 thresholds; a real
short smoke run against a real gateway on loopback produces a report."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from somaagent.errors import ConfigurationError
from somaagent.sre.loadtest.k6 import K6_VERSION, find_k6, inspect_script
from somaagent.sre.loadtest.report import render_text
from somaagent.sre.loadtest.runner import rate_cap, run_loadtest
from somaagent.sre.loadtest.script import render_script
from somaagent.sre.loadtest.spec import PRESETS, PROFILES, LoadProfile, get_loadtest
from tests.sre._prometheus import ServedGateway, serve_gateway
from tests.sre.conftest import FAKE_MODEL, gateway_settings


@pytest.fixture(scope="module")
def k6() -> Path:
    try:
        return find_k6()
    except ConfigurationError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def gateway(tmp_path: Path, fake_openai: Any) -> Iterator[ServedGateway]:
    with serve_gateway(gateway_settings(tmp_path / "gw", fake_openai)) as served:
        yield served


def _key(gateway: ServedGateway) -> str:
    return gateway.client.headers["Authorization"].removeprefix("Bearer ")


def test_the_k6_wheel_carries_the_pinned_binary(k6: Path) -> None:
    import subprocess

    version = subprocess.run([str(k6), "version"], capture_output=True, text=True, check=True)
    assert f"v{K6_VERSION}" in version.stdout


def test_five_profiles() -> None:
    assert {n: (p.peak_vus, p.total.total_seconds()) for n, p in PROFILES.items()} == {
        "smoke": (2, 300),
        "load": (100, 1800),
        "stress": (500, 1200),
        "spike": (250, 530),
        "soak": (100, 10800),
    }
    assert PROFILES["spike"].stages[1].target == 50 and PROFILES["spike"].stages[3].target == 250


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_script_passes_k6_inspect(preset: str, k6: Path) -> None:
    test = PRESETS[preset]
    options = inspect_script(render_script(test), k6=k6)
    assert "p(99)" in options["summaryTrendStats"] and "p(95)" in options["summaryTrendStats"]
    limits = test.thresholds
    api = [e for e in test.endpoints if not e.model_call]
    model = [e for e in test.endpoints if e.model_call]
    # API requests and model answers are held to their own bounds, as the SLOs split them
    assert options["thresholds"].get("http_req_duration{kind:api}") == (
        [f"p(95)<{limits.p95_ms:g}", f"p(99)<{limits.p99_ms:g}"] if api else None
    )
    assert options["thresholds"].get("http_req_duration{kind:model}") == (
        [f"p(95)<{limits.model_p95_ms:g}", f"p(99)<{limits.model_p99_ms:g}"] if model else None
    )
    assert options["thresholds"]["http_req_failed"] and options["thresholds"]["checks"]
    assert list(options["scenarios"]) == [test.name]
    script = render_script(test)
    assert "Authorization: `Bearer ${API_KEY}`" in script and "check(res" in script


def test_model_calls_are_tagged_apart_from_api_requests() -> None:
    script = render_script(get_loadtest("gateway_smoke"))
    assert '"name": "chat_completions"' in script and '"kind": "model"' in script
    assert '"kind": "api"' in script and "kind: e.kind" in script


def test_the_rate_cap_stays_under_the_keys_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOMA_RATE_LIMIT_PER_MINUTE", raising=False)
    assert rate_cap() == 8  # 80% of the gateway's default 600 a minute
    monkeypatch.setenv("SOMA_RATE_LIMIT_PER_MINUTE", "60")
    assert rate_cap() == 1
    monkeypatch.setenv("SOMA_RATE_LIMIT_PER_MINUTE", "0")
    assert rate_cap() is None  # no limit, no cap
    assert rate_cap(6000) == 80


def test_scale_shrinks_durations(k6: Path) -> None:
    test = get_loadtest("gateway_load").scaled(0.01, max_vus=5)
    assert test.profile.total.total_seconds() == 3 + 12 + 3
    assert test.profile.peak_vus == 5
    stages = inspect_script(render_script(test), k6=k6)["scenarios"]["gateway_load"]["stages"]
    assert [s["duration"] for s in stages] == ["3s", "12s", "3s"]


def test_spec_errors_name_the_field() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="duration"):
        LoadProfile(name="x", vus=1, duration="-1m")
    with pytest.raises(ValidationError, match="colour"):
        LoadProfile.model_validate({"name": "x", "vus": 1, "duration": "1m", "colour": 1})
    with pytest.raises(ConfigurationError, match="--scale"):
        get_loadtest("gateway_smoke").scaled(0)
    with pytest.raises(ConfigurationError, match="gateway_smoke"):
        get_loadtest("nope")


@pytest.mark.slow
def test_a_real_smoke_run_against_a_real_gateway(
    k6: Path, gateway: ServedGateway, tmp_path: Path
) -> None:
    test = get_loadtest("gateway_smoke").scaled(0.01, max_vus=2)  # 3 s, 2 VUs
    summary = tmp_path / "summary.json"
    report, run = run_loadtest(
        test,
        base_url=gateway.url,
        api_key=_key(gateway),
        model=FAKE_MODEL,
        think_time=0.2,
        summary_path=summary,
    )
    assert run.exit_code == 0, run.output
    assert json.loads(summary.read_text())["metrics"]["http_reqs"]["count"] == report.requests
    assert report.passed and report.requests >= 5 and report.failure_rate == 0
    assert report.checks_failed == 0 and report.checks_passed == report.requests
    assert report.latency is not None and report.latency.p99 >= report.latency.p95 > 0
    assert {e.name for e in report.endpoints} <= {"healthz", "models", "chat_completions"}
    assert any(t.metric == "http_req_duration{kind:api}" and t.ok for t in report.thresholds)
    text = render_text(report)
    for endpoint in report.endpoints:  # each endpoint's row, its name whole
        assert any(line.split()[0] == endpoint.name for line in text if line.startswith("  "))


def test_a_real_vector_search_run_searches_a_real_collection(
    k6: Path, gateway: ServedGateway
) -> None:
    """vector_search_load against the embedded default (Chroma and the local MiniLM)."""
    client = gateway.client
    assert client.post("/v1/memory/collections", json={"name": "docs"}).status_code == 201
    docs = [{"text": "Rotate an API key with soma admin keys create, then revoke the old one."}]
    assert (
        client.post("/v1/memory/collections/docs/documents", json={"documents": docs}).status_code
        == 201
    )
    test = get_loadtest("vector_search_load").scaled(0.002, max_vus=2)  # 3.6 s, 2 VUs
    with pytest.raises(ConfigurationError, match="SOMA_COLLECTION"):
        run_loadtest(test, base_url=gateway.url, api_key=_key(gateway))
    report, run = run_loadtest(
        test,
        base_url=gateway.url,
        api_key=_key(gateway),
        think_time=0.1,
        env={"SOMA_COLLECTION": "docs"},
    )
    assert run.exit_code in (0, 99), run.output  # 99: a latency threshold on a busy machine
    assert report.requests >= 5 and report.failure_rate == 0
    assert report.checks_failed == 0
    assert [e.name for e in report.endpoints] == ["memory_search"]


@pytest.mark.slow
def test_the_cli_runs_k6_and_reports(k6: Path, gateway: ServedGateway) -> None:
    from somaagent.cli import main
    from somaagent.cli.loadtest import loadtest

    if "loadtest" not in main.commands:
        main.add_command(loadtest)
    runner = CliRunner()
    args = ["--base-url", gateway.url, "--api-key", _key(gateway), "loadtest", "run"]
    result = runner.invoke(
        main,
        [*args, "gateway_smoke", "--scale", "0.01", "--max-vus", "2", "--model", FAKE_MODEL],
    )
    assert result.exit_code == 0, result.output
    assert "gateway_smoke (smoke profile)" in result.output and "PASSED" in result.output
    assert "p99" in result.output and "thresholds:" in result.output

    bad_key = runner.invoke(
        main,
        [
            "--base-url",
            gateway.url,
            "--api-key",
            "soma_sk_wrong",
            "loadtest",
            "run",
            "gateway_smoke",
            "--scale",
            "0.005",
            "--max-vus",
            "1",
            "--json",
        ],
    )
    assert bad_key.exit_code == 1
    report = json.loads(bad_key.stdout)
    # Endpoints are picked at random by weight and /healthz needs no key, so in a run this
    # short the failed share varies (0.5 was seen with two requests); what must hold is that
    # the keyed requests failed and the failure-rate threshold broke the run.
    assert report["passed"] is False
    assert report["failed_requests"] >= 1 and report["failure_rate"] > 0
    broken = {t["metric"] for t in report["thresholds"] if not t["ok"]}
    assert "http_req_failed" in broken

    listing = runner.invoke(main, ["loadtest", "list", "--json"])
    assert [t["name"] for t in json.loads(listing.output)] == list(PRESETS)
    script = runner.invoke(main, ["loadtest", "script", "gateway_smoke", "--scale", "0.1"])
    assert "export const options" in script.output and '"duration": "30s"' in script.output


@pytest.mark.slow
def test_a_run_stays_under_the_keys_rate_limit(
    k6: Path, tmp_path: Path, fake_openai: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gateway allows 120 requests a minute per key; a run without think time would spend
    the whole minute's allowance in a moment and meet 429s. Capped at 80% of the limit (read
    from SOMA_RATE_LIMIT_PER_MINUTE, as the gateway reads it) it meets none."""
    from somaagent.cli import main

    monkeypatch.setenv("SOMA_RATE_LIMIT_PER_MINUTE", "120")
    settings = gateway_settings(tmp_path / "gw", fake_openai, rate_limit_per_minute=120)
    with serve_gateway(settings) as served:
        args = ["--base-url", served.url, "--api-key", _key(served), "loadtest", "run"]
        args += ["gateway_smoke", "--scale", "0.01", "--think-time", "0", "--json"]
        capped = CliRunner().invoke(main, [*args, "--model", FAKE_MODEL])
        assert capped.exit_code == 0, capped.output
        report = json.loads(capped.stdout)
        assert report["failed_requests"] == 0 and report["requests"] >= 2
        assert report["request_rate"] <= 2.5  # at most 1 a second (k6 --rps 1), with slack

        uncapped = CliRunner().invoke(main, [*args, "--model", FAKE_MODEL, "--max-rps", "0"])
        report = json.loads(uncapped.stdout)
        assert report["failed_requests"] > 0  # the same run without the cap meets 429s
