"""Where a local fault goes: a gateway fault point (through its admin API), a fault proxy left
running (through its control API), or a proxy started for the run; and what happens when the
thing to fault cannot be told to heal."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from somaagent.errors import (
    ConfigurationError,
    FaultInjectionError,
    PermissionDeniedError,
    SomaAgentError,
)
from somaagent.sre.chaos.injectors import (
    PointInjector,
    ProxyInjector,
    RemoteProxyInjector,
    local_injector,
    point_fault,
)
from somaagent.sre.chaos.presets import PRESETS, get_preset
from somaagent.sre.chaos.proxy import ProxyFaults
from somaagent.sre.chaos.proxy_control import ControlledProxy, ProxyControlClient
from somaagent.sre.chaos.runner import run_experiment
from somaagent.types import FaultCreate, FaultPoint
from tests.fakes._server import free_port


class Controller:
    """A stand-in for ``client.faults`` that records calls and can fail on demand."""

    def __init__(self, *, fail_clears: int = 0, fail_get: SomaAgentError | None = None) -> None:
        self.calls: list[tuple[str, str, FaultCreate | None]] = []
        self.fail_clears = fail_clears
        self.fail_get = fail_get

    def get(self, point: str) -> FaultPoint:
        self.calls.append(("get", point, None))
        if self.fail_get is not None:
            raise self.fail_get
        return FaultPoint(name=point, description="")  # type: ignore[arg-type]

    def set(self, point: str, fault: FaultCreate) -> FaultPoint:
        self.calls.append(("set", point, fault))
        return FaultPoint(name=point, description="", fault=fault.model_dump())  # type: ignore[arg-type]

    def clear(self, point: str) -> None:
        self.calls.append(("clear", point, None))
        if self.fail_clears:
            self.fail_clears -= 1
            raise FaultInjectionError("gateway unreachable", target="test")


def test_each_network_pod_and_io_fault_has_a_fault_point_stand_in() -> None:
    delay = point_fault(get_preset("memory_gateway_latency"))
    assert delay.latency_ms == 100 and delay.ttl_s == 5 * 60 + 30
    assert delay.experiment == "memory-gateway-latency"
    assert point_fault(get_preset("vector_store_packet_loss")).loss_percent == 10
    assert point_fault(get_preset("slm_service_failure"), duration=timedelta(seconds=10)).abort
    assert (
        point_fault(get_preset("slm_service_failure"), duration=timedelta(seconds=10)).ttl_s == 40
    )
    io = point_fault(get_preset("clickhouse_io_delay"))
    assert io.latency_ms == 50 and io.percent == 100
    with pytest.raises(ConfigurationError, match="no fault-point fault"):
        point_fault(get_preset("gateway_cpu_stress"))


def test_model_and_vector_store_presets_default_to_the_gateways_fault_points() -> None:
    controller = Controller()
    for name, point in [
        ("memory_gateway_latency", "vector-store"),
        ("vector_store_packet_loss", "vector-store"),
        ("slm_service_failure", "model"),
    ]:
        injector = local_injector(get_preset(name), controller=controller)
        assert isinstance(injector, PointInjector) and injector.point == point
    with pytest.raises(ConfigurationError, match="admin key"):
        local_injector(get_preset("memory_gateway_latency"))  # no controller: say what is missing
    # presets without a fault point use a proxy; asking for a point there is an error
    assert isinstance(local_injector(get_preset("gateway_pod_failure")), ProxyInjector)
    with pytest.raises(ConfigurationError, match="names no gateway fault point"):
        local_injector(get_preset("gateway_pod_failure"), via="point", controller=controller)
    proxied = [p for p in PRESETS.values() if p.local is not None and p.local.point is not None]
    assert len(proxied) == 3 and all(p.local and p.local.listen for p in proxied)


def test_a_point_injector_sets_and_clears_the_fault() -> None:
    controller = Controller()
    injector = local_injector(
        get_preset("memory_gateway_latency"),
        controller=controller,
        gateway="http://127.0.0.1:8080",
        duration=timedelta(seconds=20),
    )
    assert "vector-store fault point of http://127.0.0.1:8080" in injector.describe()
    injector.setup()
    injector.apply()
    injector.rollback()
    injector.rollback()  # idempotent: cleared once
    assert [(verb, point) for verb, point, _ in controller.calls] == [
        ("get", "vector-store"),
        ("set", "vector-store"),
        ("clear", "vector-store"),
    ]
    fault = controller.calls[1][2]
    assert fault is not None and fault.latency_ms == 100 and fault.ttl_s == 50


def test_a_rollback_is_retried_then_reported_with_the_faults_own_deadline() -> None:
    flaky = Controller(fail_clears=2)
    injector = PointInjector(
        "model", FaultCreate(abort=True, ttl_s=40), flaky, sleep=lambda s: None
    )
    injector.apply()
    injector.rollback()  # two failures, then it went through
    assert [verb for verb, _, _ in flaky.calls].count("clear") == 3

    down = Controller(fail_clears=100)
    stuck = PointInjector("model", FaultCreate(abort=True, ttl_s=40), down, sleep=lambda s: None)
    stuck.apply()
    with pytest.raises(FaultInjectionError, match="clears itself within 40 s"):
        stuck.rollback()


def test_a_run_whose_rollback_fails_says_so() -> None:
    down = Controller(fail_clears=100)
    injector = PointInjector("model", FaultCreate(abort=True, ttl_s=40), down, sleep=lambda s: None)
    report = run_experiment(
        get_preset("slm_service_failure"),
        injector,
        lambda expr: 1.0,
        duration=timedelta(seconds=0.1),
        interval=timedelta(seconds=0.05),
        recovery=timedelta(seconds=0.1),
    )
    assert report.injected and not report.rolled_back
    assert any("could not clear the fault" in note for note in report.notes)


def test_a_refused_setup_stops_the_run_before_any_fault() -> None:
    refused = Controller(fail_get=PermissionDeniedError("fault injection is off"))
    injector = local_injector(get_preset("slm_service_failure"), controller=refused)
    with pytest.raises(PermissionDeniedError, match="fault injection is off"):
        run_experiment(get_preset("slm_service_failure"), injector, lambda expr: 1.0)
    assert [verb for verb, _, _ in refused.calls] == ["get"]


# -- a fault proxy left running -----------------------------------------------------------


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


@pytest.fixture
def echo_server() -> Iterator[str]:
    """A TCP echo server on its own loop in a thread; yields ``host:port``."""
    import threading

    loop = asyncio.new_event_loop()
    ready: list[str] = []

    async def start() -> asyncio.Server:
        server = await asyncio.start_server(_echo, "127.0.0.1", 0)
        ready.append(f"127.0.0.1:{server.sockets[0].getsockname()[1]}")
        return server

    server = loop.run_until_complete(start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield ready[0]
    loop.call_soon_threadsafe(server.close)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.run_until_complete(server.wait_closed())
    loop.close()


def _round_trip(address: str) -> float:
    host, port = address.rsplit(":", 1)
    start = time.perf_counter()
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"ping")
        assert sock.recv(16) == b"ping"
    return time.perf_counter() - start


def test_a_running_proxy_is_faulted_through_its_control_api(echo_server: str) -> None:
    with ControlledProxy(echo_server, listen="127.0.0.1:0", control="127.0.0.1:0") as proxy:
        assert _round_trip(proxy.listen) < 0.1
        client = ProxyControlClient(proxy.control_url)
        state = client.apply(ProxyFaults(latency_ms=150), ttl_s=60)
        assert state["faults"]["latency_ms"] == 150 and state["expires_at"]
        assert _round_trip(proxy.listen) >= 0.15
        assert client.clear()["description"] == "no fault"
        assert _round_trip(proxy.listen) < 0.1
        with pytest.raises(FaultInjectionError, match=r"HTTP 422.*colour"):
            client._send("PUT", {"colour": "red"})
        client.close()


def test_a_proxy_fault_clears_itself_after_its_ttl(echo_server: str) -> None:
    with ControlledProxy(echo_server, listen="127.0.0.1:0", control="127.0.0.1:0") as proxy:
        client = ProxyControlClient(proxy.control_url)
        client.apply(ProxyFaults(reset=True), ttl_s=0.3)
        with pytest.raises(OSError):
            _round_trip(proxy.listen)
        time.sleep(0.5)
        assert client.state()["faults"]["reset"] is False
        assert _round_trip(proxy.listen) < 0.5
        client.close()


def test_a_remote_proxy_injector_runs_an_experiment_and_heals(echo_server: str) -> None:
    with ControlledProxy(echo_server, listen="127.0.0.1:0", control="127.0.0.1:0") as proxy:
        injector = local_injector(
            get_preset("memory_gateway_latency"), proxy_control=proxy.control_url
        )
        assert isinstance(injector, RemoteProxyInjector)
        seen: list[float] = []

        def probe(expr: str) -> float:
            seen.append(_round_trip(proxy.listen))
            return 1.0

        report = run_experiment(
            get_preset("memory_gateway_latency"),
            injector,
            probe,
            duration=timedelta(seconds=0.5),
            interval=timedelta(seconds=0.2),
            recovery=timedelta(seconds=0.2),
        )
        assert report.injected and report.rolled_back and report.verdict == "passed"
        assert proxy.listen in report.fault
        assert max(seen) >= 0.1  # the delay was on while the probes ran during the fault
        assert proxy.proxy.faults.active is False


def test_an_unreachable_control_api_is_a_clear_error() -> None:
    client = ProxyControlClient("127.0.0.1:9", timeout=1)
    with pytest.raises(FaultInjectionError, match="unreachable"):
        client.state()
    client.close()


def test_soma_chaos_proxy_serves_until_stopped(echo_server: str) -> None:
    listen, control = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    code = "from somaagent.cli.chaos import chaos; chaos()"
    args = ["proxy", "--listen", listen, "--upstream", echo_server, "--control", control]
    process = subprocess.Popen(
        [sys.executable, "-c", code, *args, "--latency", "120ms"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        state: dict[str, Any] = {}
        deadline = time.monotonic() + 20
        while not state:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the proxy did not start"
            try:
                state = httpx.get(f"http://{control}/faults", timeout=1).json()
            except httpx.HTTPError:
                time.sleep(0.1)
        assert state["faults"]["latency_ms"] == 120 and state["upstream"] == echo_server
        assert _round_trip(listen) >= 0.12
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
        assert process.returncode == 0, err
        assert f"fault proxy {listen}" in out + err
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_soma_chaos_proxy_refuses_a_bad_address() -> None:
    from click.testing import CliRunner

    from somaagent.cli.chaos import chaos

    result = CliRunner().invoke(chaos, ["proxy", "--listen", "nowhere", "--upstream", "1.2.3.4:5"])
    assert result.exit_code == 2 and "--listen" in result.output


def test_local_status_without_a_gateway_still_lists_the_runs(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from somaagent.cli import main

    result = CliRunner().invoke(
        main,
        [
            *("--base-url", "http://127.0.0.1:9", "--api-key", "soma_sk_x"),
            *("chaos", "status", "--local", "--json"),
        ],
        env={"SOMA_CHAOS_STATE_DIR": str(tmp_path)},
    )
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert status["runs"] == [] and status["fault_points"] == []
    assert "http://127.0.0.1:9" in status["fault_points_error"]
