"""How much does the SomaAgent gateway add in front of an OpenAI-compatible upstream?

One run starts, each in its own process, on 127.0.0.1 only:

* the **upstream**: ``bench/_upstream.py``, a raw-asyncio server that answers
  ``POST /v1/chat/completions`` at once with a fixed small ``chat.completion``;
* **SomaAgent**: ``uvicorn --factory somaagent.gateway.app:create_app`` (what ``soma serve``
  runs), one worker, no access log, with ``SOMA_OPENAI_BASE_URL`` pointing at the upstream, a
  throwaway ``SOMA_DATA_DIR``, rate limiting off and an API key made with
  ``soma admin keys create``;
* **LiteLLM's proxy** (when ``--litellm-python`` names a Python that has ``litellm[proxy]``):
  ``litellm --config`` mapping ``gpt-4o-mini`` to ``openai/gpt-4o-mini`` at the upstream, one
  worker, telemetry off, the cost map read locally, no access log.

Then, for each round and each concurrency level (default 1 and 32 keep-alive connections), it
drives every target in turn with the same request: a warm-up, then ``--duration`` seconds of
closed-loop load from a separate process (``wrk`` with a Lua script when it is installed, else
a small asyncio client, this same file in ``--loadgen-worker`` mode). It records requests/s,
p50/p95/p99 latency, errors and the CPU seconds each server process used, and from them the
latency SomaAgent *adds* (its p50 minus the upstream's) and the throughput ratios, computed
within each round (peers measured minutes apart on a shared machine are not comparable) and
then taken as the median over rounds.

Figures go to ``bench/results/gateway_overhead.json`` and ``.md``, with the machine, the
versions and the settings, and whether each target is met:

* added p50 latency at 1 connection at most 2 ms;
* at 32 connections, at least 10x LiteLLM proxy's requests/s and at least half the upstream's.

With ``--transports`` it measures instead what the gateway's upstream call costs with each
HTTP client it could use, the client alone in its process against the same upstream (httpx's
``AsyncClient``, httpx on an aiohttp transport, aiohttp's ``ClientSession``), and writes
``bench/results/gateway_overhead_transports.{json,md}``: the figures behind the choice of
aiohttp in ``somaagent.http``.

Usage::

    .venv/bin/python bench/gateway_overhead.py
    .venv/bin/python bench/gateway_overhead.py --duration 5 --rounds 1 --skip-litellm
    .venv/bin/python bench/gateway_overhead.py --litellm-python /tmp/litellm-venv/bin/python
    .venv/bin/python bench/gateway_overhead.py --transports

LiteLLM goes in a separate virtual environment (it is large; never the project's)::

    python3 -m venv /tmp/litellm-venv
    /tmp/litellm-venv/bin/pip install 'litellm[proxy]==1.102.4'

Run it with the project's virtual environment (SomaAgent is served by ``sys.executable``). Only
the standard library is imported at module level, so the load-generator worker runs anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
HOST = "127.0.0.1"
MODEL = "gpt-4o-mini"
PAYLOAD: dict[str, Any] = {
    "model": MODEL,
    "messages": [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "Say hello."},
    ],
    "max_tokens": 16,
    "temperature": 0,
}
EXPECTED_CONTENT = "Hello from the bench upstream."
DEFAULT_LITELLM_PYTHON = Path("/tmp/litellm-venv/bin/python")
LITELLM_INSTALL = (
    "python3 -m venv /tmp/litellm-venv && "
    "/tmp/litellm-venv/bin/pip install 'litellm[proxy]==1.102.4'"
)
# SomaAgent's dependencies on the measured path, whose versions the results record.
SOMA_PACKAGES = (
    "somaagent",
    "fastapi",
    "starlette",
    "pydantic",
    "pydantic-core",
    "pydantic-settings",
    "uvicorn",
    "uvloop",
    "httptools",
    "httpx",
    "httpcore",
    "h11",
    "anyio",
    "sqlalchemy",
    "aiosqlite",
    "prometheus-client",
    "aiohttp",
    "orjson",
)
LITELLM_PACKAGES = ("litellm", "fastapi", "starlette", "pydantic", "uvicorn", "uvloop", "httpx")

TARGET_ADDED_P50_MS = 2.0
TARGET_VS_LITELLM = 10.0
TARGET_VS_DIRECT = 0.5
TARGET_CONCURRENCY = 32


# --------------------------------------------------------------------------- data


@dataclass
class Measurement:
    """One target driven at one concurrency level for one round."""

    target: str
    concurrency: int
    round: int
    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int
    server_cpu_s: float | None = None
    upstream_cpu_s: float | None = None
    loadgen: str = ""

    @property
    def server_cpu_ms_per_request(self) -> float | None:
        """CPU milliseconds the target's own process spent per request (None for direct)."""
        if self.server_cpu_s is None or not self.requests:
            return None
        return 1000.0 * self.server_cpu_s / self.requests


@dataclass
class Target:
    """A server the load generator drives: where to send, and which processes to account."""

    name: str
    label: str
    url: str
    headers: dict[str, str]
    pid: int | None  # the proxy's own process (None for the upstream itself)
    version: str = ""
    notes: list[str] = field(default_factory=list)


class BenchError(RuntimeError):
    """A server did not start, or a target gave a wrong answer."""


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class Processes:
    """Servers started by this run, each in its own session; stops them all on exit."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.started: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(
        self, name: str, argv: Sequence[str], *, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` with stdout and stderr to ``<logdir>/<name>.log``."""
        log = (self.logdir / f"{name}.log").open("wb")
        process = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=self.logdir,
            start_new_session=True,
        )
        log.close()
        self.started.append((name, process))
        return process

    def log_tail(self, name: str, lines: int = 15) -> str:
        """The last lines of a server's log, for error messages."""
        path = self.logdir / f"{name}.log"
        if not path.exists():
            return ""
        text = path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop_all(self) -> None:
        """SIGTERM each started process group, then SIGKILL whatever is left after 10 s."""
        for _, process in reversed(self.started):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for _, process in reversed(self.started):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)


def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    """Poll ``url`` until it answers 200, the process dies, or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"exited with status {process.returncode} while starting")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.2)
    raise BenchError(f"did not answer {url} within {timeout:.0f} s ({last})")


def cpu_seconds(pid: int | None) -> float | None:
    """User+system CPU seconds of ``pid`` and its descendants (Linux ``/proc``), or None."""
    if pid is None or not Path("/proc").is_dir():
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    usage: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
        usage[int(entry.name)] = int(fields[11]) + int(fields[12])
    if pid not in usage:
        return None
    tree = {pid}
    grew = True
    while grew:
        grew = False
        for child, parent in parents.items():
            if parent in tree and child not in tree:
                tree.add(child)
                grew = True
    return sum(usage[p] for p in tree) / ticks


def start_upstream(
    procs: Processes, python: str, delay_ms: float = 0.0
) -> tuple[int, subprocess.Popen[bytes]]:
    """Start ``bench/_upstream.py`` on a free port; returns the port and the process."""
    port = free_port()
    argv = [python, str(HERE / "_upstream.py"), "--port", str(port), "--delay-ms", str(delay_ms)]
    process = procs.start("upstream", argv)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"the upstream exited: {procs.log_tail('upstream')}")
        if "READY" in procs.log_tail("upstream"):
            return port, process
        time.sleep(0.05)
    raise BenchError("the upstream did not start within 20 s")


def soma_cli() -> list[str]:
    """How to run the ``soma`` CLI of the interpreter running this script."""
    script = Path(sys.executable).parent / "soma"
    if script.exists():
        return [str(script)]
    found = shutil.which("soma")
    if found:
        return [found]
    return [sys.executable, "-c", "from somaagent.cli import main; main()"]


def start_soma(procs: Processes, upstream_port: int, workdir: Path) -> Target:
    """Create a key with ``soma admin keys create`` and start the gateway under uvicorn."""
    data_dir = workdir / "soma-data"
    data_dir.mkdir()
    env = {
        **os.environ,
        "SOMA_DATA_DIR": str(data_dir),
        "SOMA_OPENAI_BASE_URL": f"http://{HOST}:{upstream_port}/v1",
        "SOMA_OPENAI_API_KEY": "sk-bench",
        "SOMA_RATE_LIMIT_PER_MINUTE": "0",
        "SOMA_DEFAULT_MODEL": MODEL,
        "SOMA_BOOTSTRAP_ADMIN_KEY": "false",  # the bench key below is the only one
        "SOMA_LOG_LEVEL": "warning",
    }
    for name in ("SOMA_DATABASE_URL", "SOMA_MODELS_FILE", "SOMA_MODE"):
        env.pop(name, None)
    created = subprocess.run(
        [*soma_cli(), "admin", "keys", "create", "--name", "bench", "--json"],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if created.returncode != 0:
        raise BenchError(f"soma admin keys create failed: {created.stderr.strip()[-800:]}")
    key = json.loads(created.stdout)["key"]
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "somaagent.gateway.app:create_app",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    process = procs.start("somaagent", argv, env=env)
    try:
        wait_http(f"http://{HOST}:{port}/healthz", process, timeout=60)
    except BenchError as exc:
        raise BenchError(f"SomaAgent {exc}\n{procs.log_tail('somaagent')}") from None
    return Target(
        name="somaagent",
        label="SomaAgent gateway",
        url=f"http://{HOST}:{port}/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        pid=process.pid,
        version=_version("somaagent") or "",
        notes=["uvicorn --factory somaagent.gateway.app:create_app, 1 worker, --no-access-log"],
    )


LITELLM_LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "stream": "ext://sys.stderr",
        }
    },
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        "uvicorn.error": {"level": "WARNING"},
        "uvicorn.access": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
    },
}


def start_litellm(
    procs: Processes, litellm_python: Path, upstream_port: int, workdir: Path
) -> Target:
    """Start LiteLLM's proxy (one worker) in front of the upstream; raises BenchError."""
    config = workdir / "litellm-config.yaml"
    # YAML is a superset of JSON, so the config needs no YAML library here.
    config.write_text(
        json.dumps(
            {
                "model_list": [
                    {
                        "model_name": MODEL,
                        "litellm_params": {
                            "model": f"openai/{MODEL}",
                            "api_base": f"http://{HOST}:{upstream_port}/v1",
                            "api_key": "sk-bench",
                        },
                    }
                ],
                "litellm_settings": {"telemetry": False, "set_verbose": False},
            },
            indent=2,
        )
    )
    log_config = workdir / "litellm-logging.json"
    log_config.write_text(json.dumps(LITELLM_LOG_CONFIG))
    port = free_port()
    script = litellm_python.parent / "litellm"
    launcher = [str(script)] if script.exists() else [str(litellm_python), "-m", "litellm"]
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # never fetch the model cost map
        "LITELLM_TELEMETRY": "False",
        "LITELLM_LOG": "ERROR",
        "LITELLM_DONT_SHOW_FEEDBACK_BOX": "True",
        "DISABLE_ADMIN_UI": "True",
        "NO_DOCS": "True",
        "NO_REDOC": "True",
    }
    for name in ("DATABASE_URL", "LITELLM_MASTER_KEY", "REDIS_HOST", "REDIS_URL"):
        env.pop(name, None)
    argv = [
        *launcher,
        "--config",
        str(config),
        "--host",
        HOST,
        "--port",
        str(port),
        "--num_workers",
        "1",
        "--log_config",
        str(log_config),
        "--telemetry",
        "False",
    ]
    process = procs.start("litellm", argv, env=env)
    try:
        wait_http(f"http://{HOST}:{port}/health/liveliness", process, timeout=180)
    except BenchError as exc:
        raise BenchError(f"LiteLLM proxy {exc}\n{procs.log_tail('litellm')}") from None
    versions = _versions_in(str(litellm_python), LITELLM_PACKAGES)
    return Target(
        name="litellm",
        label="LiteLLM proxy",
        url=f"http://{HOST}:{port}/v1/chat/completions",
        headers={},
        pid=process.pid,
        version=versions.get("litellm") or "",
        notes=[
            "litellm --config (gpt-4o-mini -> openai/gpt-4o-mini at the upstream), "
            "--num_workers 1, uvicorn access log off, telemetry off, local cost map, "
            "no master key (so no auth check and no database)",
            "versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        ],
    )


# --------------------------------------------------------------------------- checks


def check_answer(target: Target) -> dict[str, Any]:
    """Send one request with the benchmark's payload and check it is the expected completion."""
    request = urllib.request.Request(
        target.url,
        data=json.dumps(PAYLOAD).encode(),
        headers={"content-type": "application/json", **target.headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status = response.status
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raise BenchError(f"{target.label} answered HTTP {exc.code}: {exc.read()[:400]!r}") from None
    body = json.loads(raw)
    content = body["choices"][0]["message"]["content"]
    if status != 200 or body.get("object") != "chat.completion" or content != EXPECTED_CONTENT:
        raise BenchError(f"{target.label} gave an unexpected answer: {raw[:400]!r}")
    return {"status": status, "bytes": len(raw)}


# --------------------------------------------------------------------------- load


def wrk_path() -> str | None:
    """The ``wrk`` binary, if installed (``apt-get install wrk``)."""
    return shutil.which("wrk")


def _lua_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def write_wrk_script(target: Target, path: Path) -> None:
    """A wrk Lua script that POSTs the payload and prints a JSON summary line when done."""
    lines = [
        'wrk.method = "POST"',
        f"wrk.body = {_lua_string(json.dumps(PAYLOAD))}",
        'wrk.headers["content-type"] = "application/json"',
    ]
    lines += [
        f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in target.headers.items()
    ]
    lines.append(
        """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p95_us":%d,"p99_us":%d,'
    .. '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), e.connect, e.read, e.write, e.status, e.timeout))
end
"""
    )
    path.write_text("\n".join(lines))


def run_wrk(
    target: Target, concurrency: int, seconds: float, threads: int, script: Path
) -> dict[str, Any]:
    """Run wrk once and return its summary (latencies in microseconds)."""
    binary = wrk_path()
    assert binary is not None
    argv = [
        binary,
        f"-t{max(1, min(threads, concurrency))}",
        f"-c{concurrency}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "30s",
        "-s",
        str(script),
        target.url,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("WRKJSON "):
            summary: dict[str, Any] = json.loads(line.removeprefix("WRKJSON "))
            return summary
    raise BenchError(f"wrk gave no summary (status {done.returncode}): {done.stderr[-400:]}")


def run_python_loadgen(target: Target, concurrency: int, seconds: float) -> dict[str, Any]:
    """Run this file's asyncio load generator in its own process; returns its summary."""
    spec = {
        "url": target.url,
        "headers": target.headers,
        "body": json.dumps(PAYLOAD),
        "concurrency": concurrency,
        "seconds": seconds,
    }
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--loadgen-worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"the load generator failed: {done.stderr[-800:]}")
    summary: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return summary


def measure(
    target: Target,
    concurrency: int,
    round_no: int,
    args: argparse.Namespace,
    upstream_pid: int,
    workdir: Path,
) -> Measurement:
    """Warm up, then drive ``target`` for ``--duration`` s at ``concurrency`` connections."""
    use_wrk = args.loadgen == "wrk"
    script = workdir / f"{target.name}.lua"
    if use_wrk:
        write_wrk_script(target, script)
    if args.warmup > 0:
        if use_wrk:
            run_wrk(target, concurrency, args.warmup, args.wrk_threads, script)
        else:
            run_python_loadgen(target, concurrency, args.warmup)
    cpu_before = cpu_seconds(target.pid)
    upstream_before = cpu_seconds(upstream_pid)
    if use_wrk:
        raw = run_wrk(target, concurrency, args.duration, args.wrk_threads, script)
        requests = int(raw["requests"])
        duration = raw["duration_us"] / 1e6
        p50, p95, p99 = raw["p50_us"] / 1e3, raw["p95_us"] / 1e3, raw["p99_us"] / 1e3
        errors = sum(int(raw[k]) for k in ("connect", "read", "write", "status", "timeout"))
        loadgen = f"wrk -t{max(1, min(args.wrk_threads, concurrency))} -c{concurrency}"
    else:
        raw = run_python_loadgen(target, concurrency, args.duration)
        requests, duration = int(raw["requests"]), float(raw["duration_s"])
        p50, p95, p99 = raw["p50_ms"], raw["p95_ms"], raw["p99_ms"]
        errors = int(raw["errors"])
        loadgen = f"asyncio client, {concurrency} connections"
    cpu_after = cpu_seconds(target.pid)
    upstream_after = cpu_seconds(upstream_pid)
    server_cpu = (
        cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
    )
    upstream_cpu = (
        upstream_after - upstream_before
        if upstream_before is not None and upstream_after is not None
        else None
    )
    return Measurement(
        target=target.name,
        concurrency=concurrency,
        round=round_no,
        requests=requests,
        duration_s=round(duration, 3),
        rps=round(requests / duration, 1) if duration else 0.0,
        p50_ms=round(p50, 3),
        p95_ms=round(p95, 3),
        p99_ms=round(p99, 3),
        errors=errors,
        server_cpu_s=None if server_cpu is None else round(server_cpu, 2),
        upstream_cpu_s=None if upstream_cpu is None else round(upstream_cpu, 2),
        loadgen=loadgen,
    )


# --------------------------------------------------------------------------- the worker


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    # nearest rank: the smallest value with at least q% of the values at or below it
    index = min(len(sorted_values) - 1, max(0, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


async def _drive(spec: dict[str, Any]) -> dict[str, Any]:
    """Closed-loop keep-alive HTTP/1.1 load on ``concurrency`` connections (worker mode)."""
    url = urllib.parse.urlsplit(spec["url"])
    host, port = url.hostname or HOST, url.port or 80
    body = spec["body"].encode()
    head = [
        f"POST {url.path} HTTP/1.1",
        f"host: {host}:{port}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        *(f"{k}: {v}" for k, v in spec["headers"].items()),
    ]
    request = ("\r\n".join(head) + "\r\n\r\n").encode() + body
    latencies: list[float] = []
    errors = 0
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    stop = loop.time() + float(spec["seconds"])

    async def one_connection() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while True:
                began = time.perf_counter()
                if loop.time() >= stop:
                    return
                writer.write(request)
                status_line = await reader.readuntil(b"\r\n")
                headers = await reader.readuntil(b"\r\n\r\n")
                length = 0
                chunked = False
                for line in headers.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"transfer-encoding" and b"chunked" in value.lower():
                        chunked = True
                if chunked:
                    while True:
                        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                        await reader.readexactly(size + 2)
                        if size == 0:
                            break
                else:
                    await reader.readexactly(length)
                latencies.append(time.perf_counter() - began)
                if not status_line.startswith(b"HTTP/1.1 200"):
                    errors += 1
        finally:
            writer.close()

    await asyncio.gather(*(one_connection() for _ in range(int(spec["concurrency"]))))
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "duration_s": elapsed,
        "p50_ms": 1000 * _percentile(ordered, 50),
        "p95_ms": 1000 * _percentile(ordered, 95),
        "p99_ms": 1000 * _percentile(ordered, 99),
        "errors": errors,
    }


def loadgen_worker(spec_json: str) -> None:
    """Entry point of ``--loadgen-worker``: drive the target, print one JSON summary line."""
    spec = json.loads(spec_json)
    try:
        import uvloop
    except ModuleNotFoundError:
        summary = asyncio.run(_drive(spec))
    else:
        summary = uvloop.run(_drive(spec))
    print(json.dumps(summary))


# --------------------------------------------------------------------------- transports

TRANSPORTS = ("httpx", "httpx-on-aiohttp", "aiohttp")
TRANSPORT_LABELS = {
    "httpx": "httpx AsyncClient (httpcore pool), as the adapters used it",
    "httpx-on-aiohttp": "httpx AsyncClient on an aiohttp transport",
    "aiohttp": "aiohttp ClientSession, as the adapters use it",
}


async def _transport_drive(spec: dict[str, Any]) -> dict[str, Any]:
    """Closed-loop requests with one HTTP client library (``--transport-worker`` mode).

    Each request does what a chat adapter does: POST the JSON body with bearer auth and a
    per-request timeout, read the answer and ``json.loads`` it. Returns the requests made in
    the measured window, the process's CPU seconds over it and the wall time.
    """
    import aiohttp
    import httpx

    url, kind = spec["url"], spec["client"]
    body = json.dumps(PAYLOAD).encode()
    headers = {
        "authorization": "Bearer sk-bench",
        "accept": "application/json",
        "content-type": "application/json",
    }
    limit, keepalive = 200, 30.0

    class AiohttpStream(httpx.AsyncByteStream):
        def __init__(self, response: aiohttp.ClientResponse) -> None:
            self.response = response

        async def __aiter__(self) -> Any:
            async for chunk in self.response.content.iter_any():
                yield chunk

        async def aclose(self) -> None:
            self.response.release()

    class AiohttpTransport(httpx.AsyncBaseTransport):
        """httpx's client API over an aiohttp pool: httpx without httpcore."""

        def __init__(self) -> None:
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=limit, keepalive_timeout=keepalive),
                auto_decompress=False,
                skip_auto_headers=("user-agent", "accept-encoding", "accept"),
            )

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            timeouts = request.extensions.get("timeout", {})
            sent = [
                (k.decode("latin-1"), v.decode("latin-1"))
                for k, v in request.headers.raw
                if k.lower() not in (b"host", b"content-length")
            ]
            response = await self.session.request(
                request.method,
                str(request.url),
                headers=sent,
                data=await request.aread(),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=timeouts.get("connect"), sock_read=timeouts.get("read")
                ),
                allow_redirects=False,
            )
            return httpx.Response(
                response.status,
                headers=response.raw_headers,
                stream=AiohttpStream(response),
                extensions={"http_version": b"HTTP/1.1"},
            )

        async def aclose(self) -> None:
            await self.session.close()

    one: Any
    close: Any
    if kind in ("httpx", "httpx-on-aiohttp"):
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(60.0, connect=10.0),
            limits=httpx.Limits(
                max_connections=limit, max_keepalive_connections=40, keepalive_expiry=keepalive
            ),
            transport=AiohttpTransport() if kind == "httpx-on-aiohttp" else None,
        )
        timeout = httpx.Timeout(60.0)

        async def one_httpx() -> None:
            response = await client.post(url, json=PAYLOAD, headers=headers, timeout=timeout)
            response.json()

        one, close = one_httpx, client.aclose
    else:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=limit, keepalive_timeout=keepalive),
            headers={"user-agent": "somaagent"},
        )
        per_read = aiohttp.ClientTimeout(total=None, connect=60, sock_connect=60, sock_read=60)

        async def one_aiohttp() -> None:
            async with session.post(
                url, data=body, headers=headers, timeout=per_read, allow_redirects=False
            ) as response:
                json.loads(await response.read())

        one, close = one_aiohttp, session.close

    loop = asyncio.get_running_loop()

    async def connection(until: float, counter: list[int]) -> None:
        while loop.time() < until:
            await one()
            counter[0] += 1

    try:
        warm = [0]
        await asyncio.gather(
            *(connection(loop.time() + spec["warmup"], warm) for _ in range(spec["concurrency"]))
        )
        done = [0]
        cpu_before, started = time.process_time(), time.perf_counter()
        until = loop.time() + spec["seconds"]
        await asyncio.gather(*(connection(until, done) for _ in range(spec["concurrency"])))
        cpu, wall = time.process_time() - cpu_before, time.perf_counter() - started
    finally:
        await close()
    return {"requests": done[0], "cpu_s": cpu, "wall_s": wall}


def transport_worker(spec_json: str) -> None:
    """Entry point of ``--transport-worker``: print one JSON summary line."""
    spec = json.loads(spec_json)
    import uvloop

    print(json.dumps(uvloop.run(_transport_drive(spec))))


def run_transports(args: argparse.Namespace) -> int:
    """``--transports``: each client kind at each level, interleaved in rounds; writes the
    results and prints the table."""
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    machine = machine_info()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="soma-bench-") as tmp:
        procs = Processes(Path(tmp))
        try:
            port, _ = start_upstream(procs, sys.executable, args.upstream_delay_ms)
            url = f"http://{HOST}:{port}/v1/chat/completions"
            for round_no in range(1, args.rounds + 1):
                for c in args.concurrency_levels:
                    for kind in TRANSPORTS:
                        spec = {
                            "client": kind,
                            "url": url,
                            "concurrency": c,
                            "seconds": args.duration,
                            "warmup": args.warmup,
                        }
                        done = subprocess.run(
                            [sys.executable, str(Path(__file__).resolve()),
                             "--transport-worker", json.dumps(spec)],
                            capture_output=True, text=True, timeout=args.duration + 120,
                            check=False,
                        )  # fmt: skip
                        if done.returncode != 0:
                            raise BenchError(f"{kind} failed: {done.stderr[-800:]}")
                        raw = json.loads(done.stdout.strip().splitlines()[-1])
                        row = {
                            "round": round_no,
                            "client": kind,
                            "concurrency": c,
                            "requests": raw["requests"],
                            "rps": round(raw["requests"] / raw["wall_s"], 1),
                            "cpu_ms_per_request": round(1000 * raw["cpu_s"] / raw["requests"], 4),
                        }
                        rows.append(row)
                        print(
                            f"round {round_no} c={c:<3} {kind:<17} "
                            f"{row['cpu_ms_per_request']:.3f} ms CPU/request  "
                            f"{row['rps']:8.0f} req/s",
                            file=sys.stderr,
                        )
        finally:
            procs.stop_all()
    summary = []
    for c in args.concurrency_levels:
        for kind in TRANSPORTS:
            runs = [r for r in rows if r["client"] == kind and r["concurrency"] == c]
            cpu = [r["cpu_ms_per_request"] for r in runs]
            summary.append(
                {
                    "client": kind,
                    "concurrency": c,
                    "cpu_ms_per_request_median": _median(cpu),
                    "cpu_ms_per_request_min": min(cpu),
                    "cpu_ms_per_request_max": max(cpu),
                    "rps_median": _median([r["rps"] for r in runs]),
                }
            )
    report: dict[str, Any] = {
        "benchmark": "gateway_overhead --transports",
        "started_at": started_at,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(["python", "bench/gateway_overhead.py", *sys.argv[1:]]),
        "machine": machine,
        "versions": {
            p: v for p in ("httpx", "httpcore", "aiohttp", "uvloop") if (v := _version(p))
        },
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "concurrency": args.concurrency_levels,
            "upstream_delay_ms": args.upstream_delay_ms,
        },
        "measurements": rows,
        "summary": summary,
    }
    lines = [
        "# The gateway's upstream call: CPU per request by HTTP client",
        "",
        f"Run {report['finished_at']} with `{report['command']}`.",
        "",
        "Each client runs alone in its own process (uvloop) against `bench/_upstream.py` on "
        "loopback, closed loop on keep-alive connections, doing what a chat adapter does per "
        "request: POST the benchmark's JSON body with bearer auth and a per-request timeout, "
        "read the answer, `json.loads` it. CPU is the client process's own (user+system) over "
        f"the measured window; {args.rounds} round(s), clients interleaved, "
        f"{args.warmup:g} s warm-up then {args.duration:g} s each.",
        "",
        "| client | connections | CPU ms/request (median) | min-max over rounds | requests/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in summary:
        lines.append(
            f"| {TRANSPORT_LABELS[row['client']]} | {row['concurrency']} "
            f"| {row['cpu_ms_per_request_median']:.3f} "
            f"| {row['cpu_ms_per_request_min']:.3f}-{row['cpu_ms_per_request_max']:.3f} "
            f"| {row['rps_median']:.0f} |"
        )
    lines += [
        "",
        "requests/s here are those of a client sharing a busy 2-core machine with the upstream "
        "and other work; compare the CPU per request.",
        "",
        f"- CPU: {machine['cpu']}, {machine['cores']} cores, load average at start "
        f"{machine['load_average_at_start']}; {machine['os']}, Python {machine['python']}",
        "- " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
    ]
    args.output.mkdir(parents=True, exist_ok=True)
    path = args.output / f"{args.name}_transports.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")
    table = lines.index("|---|---:|---:|---:|---:|") - 1
    print("\n".join(lines[table : table + len(summary) + 2]))
    print(f"\nwrote {path} and {path.with_suffix('.md').name}")
    return 0


# --------------------------------------------------------------------------- report


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _versions_in(python: str, packages: Sequence[str]) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for p in sys.argv[1:]:\n"
        "    try: out[p] = m.version(p)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))"
    )
    done = subprocess.run(
        [python, "-c", code, *packages], capture_output=True, text=True, timeout=60, check=False
    )
    try:
        versions: dict[str, str] = json.loads(done.stdout)
    except ValueError:
        return {}
    return versions


def machine_info() -> dict[str, Any]:
    """CPU model, cores, load, OS and Python of this machine."""
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "load_average_at_start": [round(x, 2) for x in load] if load else None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
    }


def git_state() -> dict[str, Any]:
    """The commit measured and whether the gateway's sources differ from it."""

    def git(*argv: str) -> str:
        done = subprocess.run(
            ["git", *argv], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
        )
        return done.stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD") or None,
        "src_modified": bool(git("status", "--porcelain", "--", "src")),
    }


def _median(values: Sequence[float | None]) -> float | None:
    clean = [v for v in values if v is not None]
    return round(statistics.median(clean), 3) if clean else None


def summarize(
    measurements: list[Measurement], targets: list[str], concurrencies: list[int]
) -> dict[str, Any]:
    """Medians per target and level, and within-round ratios (then their medians)."""
    by_key: dict[tuple[str, int], list[Measurement]] = {}
    for m in measurements:
        by_key.setdefault((m.target, m.concurrency), []).append(m)
    table: list[dict[str, Any]] = []
    for c in concurrencies:
        for t in targets:
            runs = by_key.get((t, c), [])
            if not runs:
                continue
            table.append(
                {
                    "target": t,
                    "concurrency": c,
                    "rounds": len(runs),
                    "rps": _median([r.rps for r in runs]),
                    "p50_ms": _median([r.p50_ms for r in runs]),
                    "p95_ms": _median([r.p95_ms for r in runs]),
                    "p99_ms": _median([r.p99_ms for r in runs]),
                    "errors": sum(r.errors for r in runs),
                    "server_cpu_ms_per_request": _median(
                        [r.server_cpu_ms_per_request for r in runs]
                    ),
                }
            )
    rounds = sorted({m.round for m in measurements})
    ratios: dict[str, dict[str, Any]] = {}
    for c in concurrencies:
        per_round: dict[str, list[float]] = {}
        for r in rounds:
            got = {m.target: m for m in measurements if m.round == r and m.concurrency == c}
            direct, soma, lite = got.get("direct"), got.get("somaagent"), got.get("litellm")
            if direct and soma:
                per_round.setdefault("added_p50_ms", []).append(soma.p50_ms - direct.p50_ms)
                per_round.setdefault("added_p95_ms", []).append(soma.p95_ms - direct.p95_ms)
                if direct.rps:
                    per_round.setdefault("soma_vs_direct_rps", []).append(soma.rps / direct.rps)
            if lite and direct:
                per_round.setdefault("litellm_added_p50_ms", []).append(lite.p50_ms - direct.p50_ms)
            if soma and lite and lite.rps:
                per_round.setdefault("soma_vs_litellm_rps", []).append(soma.rps / lite.rps)
            if soma and lite and soma.server_cpu_ms_per_request and lite.server_cpu_ms_per_request:
                per_round.setdefault("litellm_vs_soma_cpu_per_request", []).append(
                    lite.server_cpu_ms_per_request / soma.server_cpu_ms_per_request
                )
        ratios[str(c)] = {
            name: {"median": _median(values), "per_round": [round(v, 3) for v in values]}
            for name, values in per_round.items()
        }
    return {"table": table, "ratios": ratios}


def verdicts(summary: dict[str, Any], litellm_reason: str | None) -> list[dict[str, Any]]:
    """Each target with the measured value and met / not met / not measured."""
    ratios = summary["ratios"]

    def value(c: int, name: str) -> float | None:
        entry = ratios.get(str(c), {}).get(name)
        return None if entry is None else entry["median"]

    added = value(1, "added_p50_ms")
    vs_lite = value(TARGET_CONCURRENCY, "soma_vs_litellm_rps")
    vs_direct = value(TARGET_CONCURRENCY, "soma_vs_direct_rps")
    c = TARGET_CONCURRENCY
    rps = {r["target"]: r["rps"] for r in summary["table"] if r["concurrency"] == c}
    lite_vs_direct = (
        rps["litellm"] / rps["direct"] if rps.get("litellm") and rps.get("direct") else None
    )
    litellm_verdict = _verdict(
        f"requests/s vs LiteLLM proxy at {c} connections", vs_lite,
        f">= {TARGET_VS_LITELLM:g}x",
        None if vs_lite is None else vs_lite >= TARGET_VS_LITELLM, "x", litellm_reason,
    )  # fmt: skip
    if (
        litellm_verdict["status"] == "NOT MET"
        and lite_vs_direct is not None
        and lite_vs_direct * TARGET_VS_LITELLM > 1
    ):
        litellm_verdict["status"] += (
            f" (out of reach here: {TARGET_VS_LITELLM:g}x LiteLLM's requests/s is "
            f"{TARGET_VS_LITELLM * lite_vs_direct:.2f}x what the upstream serves directly)"
        )
    return [
        _verdict(
            "added p50 latency at 1 connection", added, f"<= {TARGET_ADDED_P50_MS} ms",
            None if added is None else added <= TARGET_ADDED_P50_MS, " ms", None,
        ),
        litellm_verdict,
        _verdict(
            f"requests/s vs the upstream directly at {c} connections", vs_direct,
            f">= {TARGET_VS_DIRECT:g}x",
            None if vs_direct is None else vs_direct >= TARGET_VS_DIRECT, "x", None,
        ),
    ]  # fmt: skip


def _verdict(
    name: str,
    measured: float | None,
    goal: str,
    met: bool | None,
    unit: str,
    reason: str | None,
) -> dict[str, Any]:
    if met is None:
        first_line = reason.strip().splitlines()[0] if reason and reason.strip() else ""
        status = "not measured" + (f" ({first_line})" if first_line else "")
        shown = "-"
    else:
        status = "MET" if met else "NOT MET"
        shown = f"{measured:.2f}{unit}" if unit == " ms" else f"{measured:.3g}{unit}"
    return {"target": name, "goal": goal, "measured": measured, "shown": shown, "status": status}


LABELS = {
    "direct": "upstream directly",
    "somaagent": "SomaAgent gateway",
    "litellm": "LiteLLM proxy",
}


def render_table(summary: dict[str, Any]) -> list[str]:
    """The figures as a Markdown table (also printed to the terminal)."""
    lines = [
        "| target | connections | requests/s | p50 ms | p95 ms | p99 ms | errors "
        "| server CPU ms/req |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in summary["table"]:
        cpu = row["server_cpu_ms_per_request"]
        lines.append(
            f"| {LABELS.get(row['target'], row['target'])} | {row['concurrency']} "
            f"| {row['rps']:.0f} | {row['p50_ms']:.2f} | {row['p95_ms']:.2f} "
            f"| {row['p99_ms']:.2f} | {row['errors']} | {'-' if cpu is None else f'{cpu:.3f}'} |"
        )
    return lines


def cpu_notes(summary: dict[str, Any], *, upstream_delay_ms: float = 0.0) -> list[str]:
    """One line per level: CPU ms per request of each server, which bounds the ratios when the
    upstream answers at once (with a delay, connections / delay bounds them instead)."""
    cpu_bound = not upstream_delay_ms
    lines = []
    levels = sorted({row["concurrency"] for row in summary["table"]})
    for c in levels:
        rows = {r["target"]: r for r in summary["table"] if r["concurrency"] == c}
        parts = [
            f"{LABELS.get(name, name)} {row['server_cpu_ms_per_request']:.3f} ms"
            for name, row in rows.items()
            if row["server_cpu_ms_per_request"] is not None
        ]
        if parts:
            line = f"- CPU per request at {c} connection(s): " + ", ".join(parts)
            direct = rows.get("direct", {}).get("server_cpu_ms_per_request")
            soma = rows.get("somaagent", {}).get("server_cpu_ms_per_request")
            if direct and soma and cpu_bound:
                line += (
                    f"; SomaAgent spends {soma / direct:.0f}x the upstream's CPU per request, so "
                    f"about {direct / soma:.3f}x of its requests/s is the most it can reach"
                )
            lines.append(line)
    if lines:
        lines.insert(
            0,
            "Every process shares the same cores, so a proxy that spends k times the "
            "upstream's CPU per request cannot reach more than about 1/k of its requests/s:"
            if cpu_bound
            else f"The upstream waits {upstream_delay_ms:g} ms before each answer, so it is not "
            "CPU-bound: its requests/s are about connections / delay, and a proxy reaches a "
            "share of them that depends on the latency it adds, not on the CPU ratio. CPU per "
            "request:",
        )
        lines.insert(1, "")
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    """The whole report as Markdown."""
    s, m = report["settings"], report["machine"]
    out = [
        "# Gateway overhead: SomaAgent vs the upstream directly vs LiteLLM's proxy",
        "",
        f"Run {report['finished_at']} with `{report['command']}`.",
        "",
        "## Targets",
        "",
        "| target | goal | measured | status |",
        "|---|---|---:|---|",
    ]
    out += [
        f"| {v['target']} | {v['goal']} | {v['shown']} | {v['status']} |"
        for v in report["verdicts"]
    ]
    out += ["", "## Figures", "", f"Medians over {s['rounds']} round(s).", ""]
    out += render_table(report["summary"])
    out += [
        "",
        "Ratios, computed within each round (peers run back to back), median over rounds:",
        "",
    ]
    for c, ratios in report["summary"]["ratios"].items():
        parts = [f"{name} {entry['median']}" for name, entry in ratios.items()]
        out.append(f"- {c} connection(s): " + ("; ".join(parts) if parts else "-"))
    out += [
        "",
        *cpu_notes(report["summary"], upstream_delay_ms=s.get("upstream_delay_ms") or 0.0),
    ]
    if report.get("litellm_missing"):
        reason = report["litellm_missing"].strip().splitlines()
        out += ["", f"**LiteLLM was not measured:** {reason[0]}"]
        if len(reason) > 1:
            out += ["", "```", *reason[1:], "```"]
    out += ["", "## Setup", ""]
    for target in report["targets"]:
        notes = "; ".join(target["notes"])
        out.append(f"- **{target['label']}** {target['version']}: {notes}")
    out += [
        "",
        f"- load: {s['loadgen']}; {s['warmup_s']} s warm-up then {s['duration_s']} s per target "
        f"and level; connections {s['concurrency']}; closed loop, keep-alive, 127.0.0.1 only",
        f"- request: `POST /v1/chat/completions` with `{json.dumps(s['payload'])}` "
        f"({s['payload_bytes']} bytes); the upstream answers {s['upstream_answer_bytes']} bytes "
        + (
            f"after {s['upstream_delay_ms']:g} ms (a timer, no CPU)"
            if s["upstream_delay_ms"]
            else "at once"
        ),
        "- server CPU ms/req: user+system CPU of the target's own process (and its children; "
        "for the upstream directly, the upstream's) during the measured window, divided by the "
        "requests it served; less sensitive to the other load on a shared machine than "
        "requests/s",
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), load average at "
        f"start {m['load_average_at_start']} (the machine is shared: absolute figures are noisy, "
        "ratios within a round much less so)",
        f"- {m['os']}, Python {m['python']}",
        f"- SomaAgent commit {report['git']['commit']}"
        + (" (with uncommitted changes under src/)" if report["git"]["src_modified"] else ""),
        "- SomaAgent's stack: "
        + ", ".join(f"{k} {v}" for k, v in report["versions"]["somaagent"].items()),
    ]
    if report["versions"].get("wrk"):
        out.append(f"- load generator: {report['versions']['wrk']}")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description="Measure the SomaAgent gateway's overhead against the upstream directly "
        "and LiteLLM's proxy, in the same run.",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds before each")
    parser.add_argument(
        "--concurrency", default="1,32", help="comma-separated connection counts (default 1,32)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="repeat every measurement this often, interleaved"
    )
    parser.add_argument(
        "--litellm-python",
        type=Path,
        default=Path(os.environ.get("LITELLM_PYTHON", DEFAULT_LITELLM_PYTHON)),
        help="python of a separate venv with litellm[proxy] (default $LITELLM_PYTHON or "
        f"{DEFAULT_LITELLM_PYTHON})",
    )
    parser.add_argument("--skip-litellm", action="store_true", help="measure without LiteLLM")
    parser.add_argument(
        "--loadgen",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="wrk when installed (auto), or the built-in asyncio client",
    )
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument(
        "--upstream-delay-ms",
        type=float,
        default=0.0,
        help="the upstream answers this much later (default 0: at once), like a slow model",
    )
    parser.add_argument(
        "--output", type=Path, default=RESULTS, help="directory for the .json and .md results"
    )
    parser.add_argument(
        "--name",
        default="gateway_overhead",
        help="results file name, without extension (default gateway_overhead)",
    )
    parser.add_argument(
        "--transports",
        action="store_true",
        help="measure the upstream call's client CPU per request with httpx, httpx on "
        "aiohttp and aiohttp, instead of the gateways",
    )
    parser.add_argument("--loadgen-worker", metavar="SPEC", help=argparse.SUPPRESS)
    parser.add_argument("--transport-worker", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.loadgen_worker is None and args.transport_worker is None:
        try:
            args.concurrency_levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
        except ValueError:
            parser.error("--concurrency takes integers such as 1,32")
        if not args.concurrency_levels or min(args.concurrency_levels) < 1:
            parser.error("--concurrency needs at least one level, each >= 1")
        if args.duration <= 0 or args.warmup < 0 or args.rounds < 1:
            parser.error("--duration must be > 0, --warmup >= 0 and --rounds >= 1")
        if args.loadgen == "auto":
            args.loadgen = "wrk" if wrk_path() else "python"
        elif args.loadgen == "wrk" and not wrk_path():
            parser.error("--loadgen wrk: wrk is not installed (apt-get install wrk)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and write the results; returns the exit status."""
    args = parse_args(argv)
    if args.loadgen_worker is not None:
        loadgen_worker(args.loadgen_worker)
        return 0
    if args.transport_worker is not None:
        transport_worker(args.transport_worker)
        return 0
    if args.transports:
        return run_transports(args)
    if _version("somaagent") is None:
        print(
            "somaagent is not installed in this Python; run with .venv/bin/python", file=sys.stderr
        )
        return 2
    litellm_reason: str | None = None
    if args.skip_litellm:
        litellm_reason = "skipped with --skip-litellm"
    elif not args.litellm_python.exists():
        litellm_reason = (
            f"no Python at {args.litellm_python} (--litellm-python); install it with: "
            f"{LITELLM_INSTALL}"
        )
    if litellm_reason:
        print(f"LiteLLM proxy: {litellm_reason}", file=sys.stderr)

    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    machine = machine_info()
    measurements: list[Measurement] = []
    targets: list[Target] = []
    with tempfile.TemporaryDirectory(prefix="soma-bench-") as tmp:
        workdir = Path(tmp)
        procs = Processes(workdir)
        try:
            upstream_port, upstream = start_upstream(procs, sys.executable, args.upstream_delay_ms)
            direct = Target(
                name="direct",
                label="upstream directly",
                url=f"http://{HOST}:{upstream_port}/v1/chat/completions",
                headers={"authorization": "Bearer sk-bench"},
                pid=upstream.pid,  # its CPU per request is the floor the others are read against
                notes=[
                    "bench/_upstream.py: raw asyncio protocol on uvloop, fixed answer"
                    + (
                        f" after {args.upstream_delay_ms:g} ms"
                        if args.upstream_delay_ms
                        else ", at once"
                    )
                ],
            )
            targets.append(direct)
            targets.append(start_soma(procs, upstream_port, workdir))
            if litellm_reason is None:
                try:
                    targets.append(
                        start_litellm(procs, args.litellm_python, upstream_port, workdir)
                    )
                except (BenchError, OSError, subprocess.SubprocessError) as exc:
                    litellm_reason = f"it did not start: {exc}"
                    print(f"LiteLLM proxy: {litellm_reason}", file=sys.stderr)
            answers = {t.name: check_answer(t) for t in targets}
            names = [t.name for t in targets]
            print(
                f"targets: {', '.join(t.label for t in targets)}; load: {args.loadgen}; "
                f"{args.rounds} round(s) x levels {args.concurrency_levels} x "
                f"({args.warmup:g} s warm-up + {args.duration:g} s)",
                file=sys.stderr,
            )
            for round_no in range(1, args.rounds + 1):
                for c in args.concurrency_levels:
                    for target in targets:
                        m = measure(target, c, round_no, args, upstream.pid, workdir)
                        measurements.append(m)
                        print(
                            f"round {round_no} c={c:<3} {target.label:<18} {m.rps:9.0f} req/s  "
                            f"p50 {m.p50_ms:7.2f} ms  p95 {m.p95_ms:7.2f} ms  errors {m.errors}",
                            file=sys.stderr,
                        )
        finally:
            procs.stop_all()

    summary = summarize(measurements, names, args.concurrency_levels)
    report: dict[str, Any] = {
        "benchmark": "gateway_overhead",
        "started_at": started_at,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(["python", "bench/gateway_overhead.py", *(argv or sys.argv[1:])]),
        "machine": machine,
        "git": git_state(),
        "versions": {
            "somaagent": {p: v for p in SOMA_PACKAGES if (v := _version(p))},
            "wrk": _wrk_version() if args.loadgen == "wrk" else None,
        },
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "upstream_delay_ms": args.upstream_delay_ms,
            "rounds": args.rounds,
            "concurrency": args.concurrency_levels,
            "loadgen": (
                f"wrk, {args.wrk_threads} thread(s), --timeout 30s"
                if args.loadgen == "wrk"
                else "built-in asyncio client (bench/gateway_overhead.py --loadgen-worker)"
            ),
            "payload": PAYLOAD,
            "payload_bytes": len(json.dumps(PAYLOAD)),
            "upstream_answer_bytes": answers["direct"]["bytes"],
            "answer_bytes": {name: a["bytes"] for name, a in answers.items()},
        },
        "targets": [
            {"name": t.name, "label": t.label, "version": t.version, "notes": t.notes}
            for t in targets
        ],
        "litellm_missing": litellm_reason,
        "measurements": [
            {**asdict(m), "server_cpu_ms_per_request": m.server_cpu_ms_per_request}
            for m in measurements
        ],
        "summary": summary,
    }
    report["verdicts"] = verdicts(summary, litellm_reason)
    args.output.mkdir(parents=True, exist_ok=True)
    json_path = args.output / f"{args.name}.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    json_path.with_suffix(".md").write_text(render_markdown(report))
    print("\n".join(render_table(summary)))
    print()
    for v in report["verdicts"]:
        print(f"{v['status']:>12}  {v['target']}: {v['shown']} (goal {v['goal']})")
    print(f"\nwrote {json_path} and {json_path.with_suffix('.md').name}")
    return 0


def _wrk_version() -> str | None:
    binary = wrk_path()
    if binary is None:
        return None
    done = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10, check=False)
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if text else None


if __name__ == "__main__":
    sys.exit(main())
