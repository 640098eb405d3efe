"""A local chaos run's own probe traffic, against a real gateway on the embedded vector store,
and the shorter probe window of local runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from somaagent.errors import PrometheusError
from somaagent.sre.chaos.presets import LOCAL_WINDOW, WINDOW, get_preset, with_window
from somaagent.sre.chaos.traffic import ProbeTraffic, probe_requests, wait_for_data
from tests.sre._prometheus import ServedGateway, serve_gateway, wait_for
from tests.sre.conftest import gateway_settings


@pytest.fixture
def gateway(tmp_path: Path, fake_openai: Any) -> Iterator[ServedGateway]:
    with serve_gateway(gateway_settings(tmp_path / "gw", fake_openai)) as served:
        yield served


def _key(gateway: ServedGateway) -> str:
    return gateway.client.headers["Authorization"].removeprefix("Bearer ")


def test_probe_traffic_searches_a_scratch_collection_and_deletes_it(
    gateway: ServedGateway,
) -> None:
    experiment = get_preset("memory_gateway_latency")
    requests = probe_requests(experiment, collection="probe-1")
    assert [(r.method, r.path) for r in requests] == [
        ("POST", "/v1/memory/collections/probe-1/search")
    ]
    traffic = ProbeTraffic(gateway.url, _key(gateway), requests, rate=20, scratch="probe-1")
    with traffic:
        assert gateway.client.get("/v1/memory/collections/probe-1").status_code == 200
        wait_for(lambda: traffic.statuses[200] >= 3, timeout=30, what="three searches")
    assert set(traffic.statuses) == {200} and traffic.errors == 0
    assert gateway.client.get("/v1/memory/collections/probe-1").status_code == 404


def test_each_service_gets_requests_that_reach_it() -> None:
    slm = probe_requests(get_preset("slm_service_failure"), collection=None, model="m")
    assert slm[0].path == "/v1/chat/completions" and slm[0].body is not None
    assert slm[0].body["model"] == "m"
    gateway = probe_requests(get_preset("gateway_cpu_stress"), collection=None)
    assert [(r.method, r.path) for r in gateway] == [("GET", "/v1/models")]


def test_a_local_run_judges_over_a_shorter_window() -> None:
    preset = get_preset("memory_gateway_latency")
    local = with_window(preset, LOCAL_WINDOW)
    assert [p.name for p in local.hypothesis.probes] == [p.name for p in preset.hypothesis.probes]
    for before, after in zip(preset.hypothesis.probes, local.hypothesis.probes, strict=True):
        assert f"[{WINDOW}]" in before.query and f"[{WINDOW}]" not in after.query
        assert f"[{LOCAL_WINDOW}]" in after.query
        assert (after.threshold, after.during) == (before.threshold, before.during)


def test_waiting_for_data_gives_up_at_once_without_prometheus() -> None:
    def unreachable(expr: str) -> float | None:
        raise PrometheusError("unreachable", url="http://127.0.0.1:9", query=expr)

    experiment = get_preset("memory_gateway_latency")
    assert wait_for_data(experiment, unreachable, timeout=60) is False
    assert wait_for_data(experiment, lambda expr: None, timeout=0.2, every=0.05) is False
    assert wait_for_data(experiment, lambda expr: 1.0, timeout=60) is True
    # data, but not the steady state yet (a slow warm-up): it waits, then leaves it to the run
    assert wait_for_data(experiment, lambda expr: 0.5, timeout=0.2, every=0.05) is False
