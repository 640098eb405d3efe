"""The one-machine chaos demo, for real: `soma chaos run memory_gateway_latency --local` against
a gateway on its embedded default (Chroma, the local MiniLM), scraped by a real Prometheus,
while a client keeps searching its memory.

The fault goes to the gateway's ``vector-store`` fault point: 100 ms more on every vector-store
call. The experiment's hypothesis is the memory SLOs' SLIs over the last minute: availability
must hold throughout; latency (95% under 100 ms) is watched during the fault and must recover
after it. So the run shows the memory latency SLI fall below its objective while the fault is
on, and come back once it is off, with the gateway answering every search.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from somaagent.cli import main
from somaagent.sre.chaos.presets import get_preset
from tests.sre._prometheus import GATEWAY_JOB, serve_gateway, start_prometheus, wait_for
from tests.sre.conftest import gateway_settings

pytestmark = pytest.mark.slow


class Searcher:
    """Searches the gateway's memory every 50 ms from a thread, recording each answer."""

    def __init__(self, url: str, key: str) -> None:
        self.client = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )
        self.statuses: list[int] = []
        self.slowest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        body = {"query": "how long do refunds take", "mode": "vector"}
        while not self._stop.is_set():
            start = time.perf_counter()
            response = self.client.post("/v1/memory/collections/handbook/search", json=body)
            self.slowest = max(self.slowest, time.perf_counter() - start)
            self.statuses.append(response.status_code)
            self._stop.wait(0.05)

    def __enter__(self) -> Searcher:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(30)
        self.client.close()


def test_memory_gateway_latency_locally_goes_below_the_slo_and_recovers(
    prometheus_bin: str,
    tmp_path: Path,
    fake_openai: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOMA_CHAOS_STATE_DIR", str(tmp_path / "chaos"))
    settings = gateway_settings(tmp_path / "gw", fake_openai)
    experiment = get_preset("memory_gateway_latency")
    latency, availability = (probe.query for probe in experiment.hypothesis.probes[::-1])
    with serve_gateway(settings) as gateway:
        client = gateway.client
        assert client.post("/v1/memory/collections", json={"name": "handbook"}).status_code == 201
        docs = [{"text": "Refunds take five working days.", "source": "refunds.md"}]
        indexed = client.post("/v1/memory/collections/handbook/documents", json={"documents": docs})
        assert indexed.status_code == 201, indexed.text
        key = client.headers["Authorization"].removeprefix("Bearer ")
        with (
            start_prometheus({GATEWAY_JOB: [gateway.address]}) as prometheus,
            Searcher(gateway.url, key) as searcher,
        ):

            def steady() -> bool:
                value = prometheus.value(latency)
                return value is not None and value >= 0.95

            wait_for(steady, timeout=60, what="memory latency data in Prometheus")
            assert prometheus.value(availability) == 1
            result = CliRunner().invoke(
                main,
                [
                    "--base-url",
                    gateway.url,
                    "--api-key",
                    key,
                    "chaos",
                    "run",
                    "memory_gateway_latency",
                    "--local",
                    "--duration",
                    "8s",
                    "--interval",
                    "2s",
                    "--recovery",
                    "120s",
                    "--prometheus",
                    prometheus.url,
                    "--json",
                ],
            )
            effects = prometheus.value(
                'sum(soma_chaos_fault_effects_total{point="vector-store",effect="delayed"})'
            )
            active = prometheus.value('soma_chaos_fault_active{point="vector-store"}')
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["mode"] == "local" and report["injected"] and report["rolled_back"]
    assert "vector-store fault point" in report["fault"]

    def seen(phase: str, probe: str) -> list[str]:
        return [
            r["status"]
            for check in report["checks"]
            if check["phase"] == phase
            for r in check["results"]
            if r["probe"] == probe
        ]

    assert seen("before", "memory-latency") == ["held"]
    assert "violated" in seen("during", "memory-latency")  # the SLI fell below 95%
    assert seen("after", "memory-latency")[-1] == "held"  # and came back
    assert set(seen("during", "memory-availability")) == {"held"}
    assert report["verdict"] == "passed"
    assert effects is not None and effects > 0 and active == 0
    assert set(searcher.statuses) == {200}  # slower, never failed
    assert searcher.slowest >= 0.1


def test_an_interrupted_local_run_takes_its_fault_point_off(
    tmp_path: Path, fake_openai: Any
) -> None:
    """SIGTERM (what `soma chaos stop --local` sends) in the middle of the fault: the run rolls
    the gateway's fault point back before it exits."""
    import os
    import signal
    import subprocess
    import sys

    settings = gateway_settings(tmp_path / "gw", fake_openai)
    with serve_gateway(settings) as gateway:
        key = gateway.client.headers["Authorization"].removeprefix("Bearer ")
        code = "from somaagent.cli import main; main()"
        args = ["--base-url", gateway.url, "--api-key", key, "chaos", "run"]
        args += ["memory_gateway_latency", "--local", "--duration", "5m", "--interval", "1s"]
        args += ["--prometheus", "http://127.0.0.1:9"]  # no Prometheus: probes say "error"
        env = dict(os.environ, SOMA_CHAOS_STATE_DIR=str(tmp_path / "state"))
        process = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            point = "/v1/admin/faults/vector-store"
            wait_for(
                lambda: (
                    process.poll() is None and gateway.client.get(point).json()["fault"] is not None
                ),
                timeout=30,
                what="the fault on the vector-store point",
            )
            fault = gateway.client.get(point).json()
            assert fault["fault"]["latency_ms"] == 100
            assert fault["fault"]["experiment"] == "memory-gateway-latency"
            shown = CliRunner().invoke(
                main,
                [
                    "--base-url",
                    gateway.url,
                    "--api-key",
                    key,
                    "chaos",
                    "status",
                    "--local",
                    "--json",
                ],
                env={"SOMA_CHAOS_STATE_DIR": str(tmp_path / "state")},
            )
            assert shown.exit_code == 0, shown.output
            status = json.loads(shown.stdout)
            assert [run["pid"] for run in status["runs"]] == [process.pid]
            assert [p["name"] for p in status["fault_points"]] == ["vector-store"]
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=30)
            assert process.returncode == 130, err
            assert "rolled back" in err
            assert gateway.client.get(point).json()["fault"] is None
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
