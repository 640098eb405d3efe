"""`soma sre verify`: a real k6 load on a real gateway, a fault proxy in front of its model
server resetting connections mid-run, and the SLOs judged by a real Prometheus."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from somaagent.errors import ConfigurationError
from somaagent.sre.loadtest.k6 import find_k6
from somaagent.sre.verify import VERIFY_PRESETS, get_plan, run_verify
from tests.fakes._server import free_port
from tests.sre._prometheus import GATEWAY_JOB, serve_gateway, start_prometheus, wait_for
from tests.sre.conftest import FAKE_MODEL, gateway_settings


def test_verify_presets_name_real_load_tests_chaos_presets_and_slos() -> None:
    from somaagent.sre.chaos.presets import PRESETS as CHAOS
    from somaagent.sre.loadtest.spec import PRESETS as LOAD
    from somaagent.sre.slo import default_specs

    names = {spec.name for spec in default_specs()}
    for plan in VERIFY_PRESETS.values():
        assert plan.load in LOAD and plan.chaos in CHAOS and set(plan.slos) <= names
    with pytest.raises(ConfigurationError, match="slm_service_failure"):
        get_plan("nope")


@pytest.mark.slow
def test_verify_judges_the_run_by_the_slos(
    prometheus_bin: str, tmp_path: Path, fake_openai: Any
) -> None:
    try:
        find_k6()
    except ConfigurationError as exc:
        pytest.skip(str(exc))
    upstream = httpx.URL(fake_openai.base_url)
    listen = f"127.0.0.1:{free_port()}"
    settings = gateway_settings(tmp_path / "gw", fake_openai, openai_base_url=f"http://{listen}/v1")
    with (
        serve_gateway(settings) as gateway,
        start_prometheus({GATEWAY_JOB: [gateway.address]}) as prometheus,
    ):
        wait_for(lambda: prometheus.value(f'sum(up{{job="{GATEWAY_JOB}"}})') == 1)
        key = gateway.client.headers["Authorization"].removeprefix("Bearer ")
        lines: list[str] = []
        report = run_verify(
            get_plan("slm_service_failure"),
            base_url=gateway.url,
            api_key=key,
            prometheus=prometheus.url,
            scale=0.04,  # 12 s of load; the fault for 6 s from the 3rd second
            max_vus=2,
            model=FAKE_MODEL,
            think_time=0.2,
            listen=listen,
            upstream=f"{upstream.host}:{upstream.port}",
            on_event=lines.append,
        )
    assert report.chaos is not None and report.chaos.injected and report.chaos.rolled_back
    assert report.load is not None and report.load.requests > 10
    assert 0 < report.load.failure_rate < 1  # the fault hit part of the run, not all of it
    burns = {burn.name: burn for burn in report.slos}
    assert burns["gateway-error-rate"].held is False
    assert burns["gateway-error-rate"].budget_consumed is not None
    assert burns["gateway-error-rate"].budget_consumed > 0
    assert burns["slm-availability"].held is False
    assert all(burn.queries for burn in burns.values())
    assert report.verdict == "failed" and "gateway-error-rate" in report.broken
    assert any(line.startswith("fault on:") for line in lines)

    from somaagent.cli.sre import show

    show(report)  # renders without error
    assert json.loads(report.model_dump_json())["verdict"] == "failed"


def test_the_cli_refuses_an_unknown_preset() -> None:
    from somaagent.cli.sre import sre

    result = CliRunner().invoke(sre, ["verify", "nope"])
    assert result.exit_code == 2 and "nope" in result.output


@pytest.mark.slow
def test_verify_puts_its_fault_on_the_gateways_fault_point(
    prometheus_bin: str, tmp_path: Path, fake_openai: Any
) -> None:
    """memory_gateway_latency on the embedded default: k6 searches a real collection while the
    vector-store fault point adds 100 ms; latency breaks, availability holds."""
    from somaagent import Client

    try:
        find_k6()
    except ConfigurationError as exc:
        pytest.skip(str(exc))
    settings = gateway_settings(tmp_path / "gw", fake_openai)
    with (
        serve_gateway(settings) as gateway,
        start_prometheus({GATEWAY_JOB: [gateway.address]}) as prometheus,
    ):
        client = gateway.client
        assert client.post("/v1/memory/collections", json={"name": "kb"}).status_code == 201
        docs = [{"text": "Rotate API keys every ninety days.", "source": "keys.md"}]
        assert (
            client.post("/v1/memory/collections/kb/documents", json={"documents": docs}).status_code
            == 201
        )
        wait_for(lambda: prometheus.value(f'sum(up{{job="{GATEWAY_JOB}"}})') == 1)
        key = client.headers["Authorization"].removeprefix("Bearer ")
        with Client(api_key=key, base_url=gateway.url) as sdk:
            with pytest.raises(ConfigurationError, match="SOMA_COLLECTION"):
                run_verify(
                    get_plan("memory_gateway_latency"),
                    base_url=gateway.url,
                    api_key=key,
                    prometheus=prometheus.url,
                    controller=sdk.faults,
                )
            report = run_verify(
                get_plan("memory_gateway_latency"),
                base_url=gateway.url,
                api_key=key,
                prometheus=prometheus.url,
                scale=0.01,  # 18 s of searches; the fault for 9 s from the 4th second
                max_vus=2,
                think_time=0.1,
                controller=sdk.faults,
                env={"SOMA_COLLECTION": "kb"},
            )
            assert sdk.faults.get("vector-store").fault is None  # rolled back
    assert report.chaos is not None and report.chaos.rolled_back
    assert "vector-store fault point" in report.chaos.fault
    assert report.load is not None and report.load.failure_rate == 0  # slower, never failing
    burns = {burn.name: burn for burn in report.slos}
    assert burns["memory-availability"].held is True
    assert burns["memory-latency"].held is False
    assert burns["memory-latency"].error_ratio is not None
    assert 0.1 < burns["memory-latency"].error_ratio < 0.95  # the fault covered part of the run
    assert report.verdict == "failed" and report.broken == ["memory-latency"]
