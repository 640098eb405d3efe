"""No child outlives the command that started it: k6 (``soma loadtest run``, ``soma sre
verify``) and prometheus (``soma slo prometheus``), on a normal exit, an error, Ctrl-C (SIGINT
to the command alone, the harder case: a terminal's Ctrl-C reaches k6 too) and SIGTERM.

Each command runs as a real process with a mark in its environment; its children inherit the
mark, so ``/proc`` finds any that survived, wherever they were reparented.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from somaagent.errors import ConfigurationError
from somaagent.sre import children
from somaagent.sre.loadtest.k6 import find_k6
from tests.fakes._server import free_port
from tests.sre._prometheus import ServedGateway, serve_gateway, wait_for
from tests.sre.conftest import FAKE_MODEL, gateway_settings

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="needs Linux /proc (survivors are found there)"
)

MARK = "SOMA_TEST_CHILD_MARK"


def _marked(mark: str) -> list[str]:
    """The command lines of live processes carrying ``mark`` (zombies have no environment)."""
    found = []
    needle = f"{MARK}={mark}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in environ:
            found.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return found


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


class Command:
    """``soma ARGS`` as its own process, marked, against ``gateway``."""

    def __init__(self, args: list[str], tmp_path: Path, gateway: ServedGateway | None) -> None:
        self.mark = uuid.uuid4().hex
        env = dict(os.environ)
        env.update(
            {
                MARK: self.mark,
                "SOMA_CONFIG_DIR": str(tmp_path / "config"),
                "SOMA_CHAOS_STATE_DIR": str(tmp_path / "chaos"),
                "SOMA_MODEL": FAKE_MODEL,
            }
        )
        if gateway is not None:
            key = gateway.client.headers["Authorization"].removeprefix("Bearer ")
            env.update({"SOMA_BASE_URL": gateway.url, "SOMA_API_KEY": key})
        code = "from somaagent.cli import main; main()"
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def running(self, name: str) -> bool:
        return any(name in line for line in _marked(self.mark))

    def finish(self, timeout: float = 90) -> tuple[int, str]:
        output, _ = self.process.communicate(timeout=timeout)
        return self.process.returncode, output

    def survivors(self) -> list[str]:
        # a child that is being killed may take a moment to leave /proc
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: not _marked(self.mark), timeout=5)
        return _marked(self.mark)


LOAD = ["loadtest", "run", "gateway_smoke", "--max-vus", "1", "--think-time", "0.2"]


@pytest.mark.slow
def test_k6_ends_with_a_load_test_that_ends_normally(
    k6: Path, gateway: ServedGateway, tmp_path: Path
) -> None:
    command = Command([*LOAD, "--scale", "0.005"], tmp_path, gateway)
    code, output = command.finish()
    assert code == 0, output
    assert "PASSED" in output
    assert command.survivors() == []


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_k6_ends_with_an_interrupted_load_test(
    k6: Path, gateway: ServedGateway, tmp_path: Path, signum: int
) -> None:
    command = Command([*LOAD, "--scale", "1"], tmp_path, gateway)  # 5 minutes unless stopped

    def loaded() -> bool:  # k6 has sent keyed requests, so its summary has iterations
        metrics = gateway.client.get("/metrics").text
        return 'http_route="/v1/models"' in metrics or "/v1/chat/completions" in metrics

    wait_for(lambda: command.running("k6") and loaded(), timeout=60, what="k6's requests")
    command.process.send_signal(signum)
    code, output = command.finish()
    assert command.survivors() == []
    # k6 got SIGINT, stopped its users and still wrote the summary the report is made of
    assert "gateway_smoke (smoke profile)" in output, output
    assert code in (0, 1), output


@pytest.mark.slow
def test_k6_ends_when_verify_fails_with_an_error(
    k6: Path, gateway: ServedGateway, tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # no fault proxy's control API answers here
    args = ["sre", "verify", "slm_service_failure", "--scale", "0.1", "--max-vus", "1"]
    command = Command([*args, "--proxy-control", dead, "--prometheus", dead], tmp_path, gateway)
    code, output = command.finish()
    assert code not in (0, None), output
    assert "Traceback" not in output, output
    assert command.survivors() == []


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_k6_ends_and_the_fault_is_rolled_back_when_verify_is_interrupted(
    k6: Path, gateway: ServedGateway, tmp_path: Path, signum: int
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # no Prometheus: the probes have no data
    args = ["sre", "verify", "slm_service_failure", "--scale", "0.1", "--max-vus", "1"]
    command = Command([*args, "--prometheus", dead], tmp_path, gateway)

    def faulted() -> bool:
        point = gateway.client.get("/v1/admin/faults/model").json()
        return bool(point.get("fault"))

    wait_for(faulted, timeout=60, what="the model fault point set by verify")
    assert command.running("k6")
    command.process.send_signal(signum)
    code, output = command.finish()
    assert code == 130, output
    assert "interrupted" in output
    assert command.survivors() == []
    assert not faulted()


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_prometheus_ends_with_soma_slo_prometheus(
    prometheus_bin: str, tmp_path: Path, signum: int
) -> None:
    listen = f"127.0.0.1:{free_port()}"
    args = ["slo", "prometheus", "--listen", listen, "--dir", str(tmp_path / "prom")]
    command = Command([*args, "--gateway", f"127.0.0.1:{free_port()}"], tmp_path, None)
    wait_for(lambda: _ready(listen), timeout=60, what="prometheus ready")
    command.process.send_signal(signum)
    code, output = command.finish()
    assert code == 0, output
    assert command.survivors() == []


def _ready(listen: str) -> bool:
    try:
        return httpx.get(f"http://{listen}/-/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_end_all_stops_what_spawn_started_and_kills_what_will_not_stop(tmp_path: Path) -> None:
    # a child that ignores its stop signal is killed after the grace period
    stubborn = children.spawn(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, "
            "signal.SIG_IGN); print('ready', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    polite = children.spawn([sys.executable, "-c", "import time; time.sleep(60)"])
    assert stubborn.stdout is not None and stubborn.stdout.readline() == "ready\n"
    assert {stubborn, polite} <= set(children.live())
    children.end_all(grace=1)
    assert stubborn.returncode == -signal.SIGKILL
    assert polite.returncode == -signal.SIGTERM
    assert stubborn not in children.live() and polite not in children.live()
    stubborn.stdout.close()
