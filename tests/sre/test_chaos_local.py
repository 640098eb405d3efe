"""Local chaos: the fault proxy (latency, jitter, loss, bandwidth, reset, partition) on real
sockets, CPU and memory stress that never outlives its run, verdicts, and rollback on
SIGTERM. Every fault here is on 127.0.0.1 and lasts seconds."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest

from somaagent.sre.chaos.hypothesis import PrometheusHTTP
from somaagent.sre.chaos.injectors import ProxyInjector, StressInjector, local_injector
from somaagent.sre.chaos.presets import get_preset
from somaagent.sre.chaos.proxy import FaultProxy, ProxyFaults, ThreadedProxy
from somaagent.sre.chaos.runner import run_experiment, stop_local
from somaagent.sre.chaos.stress import Stress


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@pytest.fixture
async def proxy() -> AsyncIterator[FaultProxy]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    fault_proxy = FaultProxy(server.sockets[0].getsockname()[:2], seed=7)
    await fault_proxy.start()
    yield fault_proxy
    await fault_proxy.aclose()
    server.close()
    await server.wait_closed()


async def _round_trips(port: int, count: int = 4, size: int = 100) -> list[float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    times = []
    try:
        for _ in range(count):
            start = time.perf_counter()
            writer.write(b"x" * size)
            await writer.drain()
            got = 0
            while got < size:
                chunk = await reader.read(65536)
                assert chunk, "connection closed"
                got += len(chunk)
            times.append(time.perf_counter() - start)
    finally:
        writer.close()
    return times


@pytest.mark.anyio
async def test_latency_and_jitter_delay_each_answer(proxy: FaultProxy) -> None:
    port = proxy.address[1]
    assert max(await _round_trips(port)) < 0.05
    proxy.apply(ProxyFaults(latency_ms=100, jitter_ms=20))
    times = await _round_trips(port)
    assert all(0.079 <= t < 0.5 for t in times), times
    proxy.clear()
    assert max(await _round_trips(port)) < 0.05


@pytest.mark.anyio
async def test_loss_costs_retransmission_time(proxy: FaultProxy) -> None:
    proxy.apply(ProxyFaults(loss_percent=50, loss_rto_ms=50))
    times = await _round_trips(proxy.address[1], count=12)
    assert proxy.stats.lost_chunks > 0
    assert sum(t >= 0.045 for t in times) >= 2  # some chunks were "lost" and resent


@pytest.mark.anyio
async def test_bandwidth_paces_bytes(proxy: FaultProxy) -> None:
    proxy.apply(ProxyFaults(bandwidth_bytes_per_s=20_000, direction="both"))
    (elapsed,) = await _round_trips(proxy.address[1], count=1, size=10_000)
    assert elapsed >= 0.4  # 10 kB each way at 20 kB/s


@pytest.mark.anyio
async def test_reset_drops_open_and_new_connections(proxy: FaultProxy) -> None:
    port = proxy.address[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"hi")
    assert await reader.read(10) == b"hi"
    proxy.apply(ProxyFaults(reset=True))
    with pytest.raises(ConnectionError):
        writer.write(b"again")
        await writer.drain()
        if not await reader.read(10):
            raise ConnectionResetError
    writer.close()
    with pytest.raises((ConnectionError, AssertionError)):
        await _round_trips(port, count=1)
    proxy.clear()
    assert await _round_trips(port, count=1)


@pytest.mark.anyio
async def test_partition_stalls_until_healed(proxy: FaultProxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.address[1])
    proxy.apply(ProxyFaults(partition=True))
    writer.write(b"held")
    await writer.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(10), 0.3)
    proxy.clear()
    assert await asyncio.wait_for(reader.read(10), 2) == b"held"  # nothing lost, only late
    writer.close()


def test_the_gateway_through_the_proxy_sees_the_fault(tmp_path: Path, fake_openai: Any) -> None:
    """The gateway's upstream model server behind the proxy: slower, then failing, then fine."""
    from tests.sre._prometheus import serve_gateway
    from tests.sre.conftest import FAKE_MODEL, gateway_settings

    host, port = httpx.URL(fake_openai.base_url).host, httpx.URL(fake_openai.base_url).port
    assert port is not None
    with ThreadedProxy((host, port)) as proxy:
        proxied = f"http://127.0.0.1:{proxy.address[1]}/v1"
        settings = gateway_settings(tmp_path / "gw", fake_openai, openai_base_url=proxied)
        with serve_gateway(settings) as gateway:
            body = {"model": FAKE_MODEL, "messages": [{"role": "user", "content": "hi"}]}
            assert gateway.client.post("/v1/chat/completions", json=body).status_code == 200
            proxy.apply(ProxyFaults(latency_ms=300))
            start = time.perf_counter()
            assert gateway.client.post("/v1/chat/completions", json=body).status_code == 200
            assert time.perf_counter() - start >= 0.3
            proxy.apply(ProxyFaults(reset=True))
            assert gateway.client.post("/v1/chat/completions", json=body).status_code >= 500
            proxy.clear()
            assert gateway.client.post("/v1/chat/completions", json=body).status_code == 200


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_memory_and_cpu_stress_are_real_and_stop() -> None:
    memory = Stress("memory", 48 << 20, workers=1, duration=timedelta(seconds=10))
    memory.start()
    try:
        assert _rss_kib(memory.processes[0].pid) >= 48 * 1024
    finally:
        memory.stop()
    assert not memory.running

    cpu = Stress("cpu", 90, workers=1, duration=timedelta(seconds=10))
    cpu.start()
    try:
        pid = cpu.processes[0].pid
        before = _cpu_seconds(pid)
        time.sleep(1.0)
        assert _cpu_seconds(pid) - before >= 0.1  # busy (the machine is shared: a low bar)
    finally:
        cpu.stop()
    assert not cpu.running


def test_a_stress_worker_stops_at_its_own_deadline() -> None:
    stress = Stress("cpu", 10, workers=1, duration=timedelta(seconds=0.5))
    stress.start()
    stress.processes[0].wait(timeout=10)
    assert not stress.running
    stress.stop()


def test_local_injectors_follow_the_fault_type() -> None:
    delay = local_injector(get_preset("memory_gateway_latency"), via="proxy")
    assert isinstance(delay, ProxyInjector) and delay.faults.latency_ms == 100
    assert delay.listen == "127.0.0.1:16333" and delay.upstream == "127.0.0.1:6333"
    loss = local_injector(get_preset("vector_store_packet_loss"), upstream="127.0.0.1:6334")
    assert isinstance(loss, ProxyInjector) and loss.faults.loss_percent == 10
    assert loss.upstream == "127.0.0.1:6334"  # a proxy address chooses the proxy
    assert local_injector(get_preset("gateway_pod_failure")).faults.reset  # type: ignore[union-attr]
    io = local_injector(get_preset("clickhouse_io_delay"), listen="127.0.0.1:0")
    assert isinstance(io, ProxyInjector) and io.faults.latency_ms == 50
    cpu = local_injector(get_preset("gateway_cpu_stress"), max_workers=1)
    assert isinstance(cpu, StressInjector) and cpu.stress.workers == 1 and cpu.stress.amount == 80
    memory = local_injector(get_preset("slm_memory_stress"), memory_cap=64 << 20)
    assert isinstance(memory, StressInjector) and memory.stress.amount <= 64 << 20


class _Probe:
    """A querier that answers from a script of values, per phase."""

    def __init__(self, values: dict[str, float | None]) -> None:
        self.values = values
        self.phase = "before"

    def __call__(self, expr: str) -> float | None:
        return self.values[self.phase]


class _Recorder:
    mode: Literal["local", "kubernetes"] = "local"

    def __init__(self, probe: _Probe, *, interrupt: bool = False) -> None:
        self.probe, self.interrupt = probe, interrupt
        self.events: list[str] = []

    def describe(self) -> str:
        return "recorded fault"

    def setup(self) -> None:
        self.events.append("setup")

    def apply(self) -> None:
        self.events.append("apply")
        self.probe.phase = "during"
        if self.interrupt:
            raise KeyboardInterrupt

    def rollback(self) -> None:
        self.events.append("rollback")
        self.probe.phase = "after"

    def teardown(self) -> None:
        self.events.append("teardown")


@pytest.mark.parametrize(
    ("values", "verdict"),
    [
        ({"before": 1.0, "during": 1.0, "after": 1.0}, "passed"),
        ({"before": 1.0, "during": 0.5, "after": 1.0}, "deviated"),
        ({"before": 1.0, "during": 0.5, "after": 0.5}, "failed"),
        ({"before": 0.5, "during": 1.0, "after": 1.0}, "aborted"),
        ({"before": None, "during": None, "after": None}, "inconclusive"),
    ],
)
def test_verdicts(values: dict[str, float | None], verdict: str) -> None:
    probe = _Probe(values)
    injector = _Recorder(probe)
    report = run_experiment(
        get_preset("gateway_cpu_stress"),
        injector,
        probe,
        duration=timedelta(seconds=0.2),
        interval=timedelta(seconds=0.05),
        recovery=timedelta(seconds=0.2),
    )
    assert report.verdict == verdict
    assert injector.events[0] == "setup" and injector.events[-1] == "teardown"
    assert "rollback" in injector.events
    if verdict == "aborted":
        assert "apply" not in injector.events and not report.injected


def test_an_interrupt_still_rolls_back() -> None:
    probe = _Probe({"before": 1.0, "during": 1.0, "after": 1.0})
    injector = _Recorder(probe, interrupt=True)
    report = run_experiment(
        get_preset("gateway_cpu_stress"),
        injector,
        probe,
        duration=timedelta(seconds=5),
    )
    assert report.interrupted and report.verdict == "interrupted" and report.rolled_back
    assert injector.events == ["setup", "apply", "rollback", "rollback", "teardown"]


def test_prometheus_unreachable_is_a_status_not_a_crash() -> None:
    querier = PrometheusHTTP("http://127.0.0.1:9", timeout=1)
    probe = _Probe({"before": 1.0, "during": 1.0, "after": 1.0})
    report = run_experiment(
        get_preset("gateway_cpu_stress"),
        _Recorder(probe),
        querier,
        duration=timedelta(seconds=0.1),
        interval=timedelta(seconds=0.05),
        recovery=timedelta(seconds=0.1),
    )
    querier.close()
    assert report.verdict == "inconclusive"
    assert {r.status for c in report.checks for r in c.results} == {"error"}
    assert "unreachable" in (report.checks[0].results[0].error or "")


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = tmp_path / "state"
    monkeypatch.setenv("SOMA_CHAOS_STATE_DIR", str(folder))
    yield folder


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_soma_chaos_stop_rolls_a_local_run_back(state_dir: Path) -> None:
    """`soma chaos run gateway_cpu_stress --local` in its own process, stopped by SIGTERM
    through `stop_local`: its stress workers are gone and it exits 130."""
    code = "from somaagent.cli.chaos import chaos; chaos()"
    args = [
        "run",
        "gateway_cpu_stress",
        "--local",
        "--duration",
        "60s",
        "--interval",
        "1s",
        "--prometheus",
        "http://127.0.0.1:9",
        "--recovery",
        "1s",
    ]
    env = dict(os.environ, SOMA_CHAOS_STATE_DIR=str(state_dir))
    process = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not (list(state_dir.glob("*.json")) and _children(process.pid)):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the run did not start its stress"
            time.sleep(0.1)
        workers = _children(process.pid)
        assert stop_local("gateway-cpu-stress", wait=20) == ["gateway-cpu-stress"]
        _, err = process.communicate(timeout=20)
        assert process.returncode == 130, err
        assert "rolled back" in err
        assert list(state_dir.glob("*.json")) == []
        for worker in workers:
            assert not Path(f"/proc/{worker}").exists() or _zombie(worker)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()


def _zombie(pid: int) -> bool:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
