"""A real Prometheus for tests, and a real gateway for it to scrape.

``start_prometheus`` writes a config, starts the ``prometheus`` binary (Debian package
``prometheus``) on a free loopback port with a throwaway TSDB, waits until it is ready and
stops it on exit::

    with start_prometheus({"somaagent-gateway": ["127.0.0.1:8080"]}) as prom:
        wait_for(lambda: prom.value("sum(up)") == 1)

``serve_gateway`` runs ``create_app(settings)`` under real uvicorn and yields its URL and an
authenticated client. ``wait_for`` polls a condition (tests never sleep for a fixed time).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from somaagent.gateway.app import create_app
from somaagent.gateway.settings import Settings
from somaagent.sre.slo.local import GATEWAY_JOB, prometheus_config
from tests.fakes._server import free_port, run_asgi

__all__ = [
    "GATEWAY_JOB",
    "Prometheus",
    "ServedGateway",
    "prometheus_binary",
    "serve_gateway",
    "start_prometheus",
    "wait_for",
]

SCRAPE_INTERVAL = "1s"


def prometheus_binary() -> str | None:
    """The ``prometheus`` executable, or ``None`` when it is not installed."""
    return shutil.which("prometheus")


def wait_for(
    condition: Callable[[], Any], *, timeout: float = 20.0, interval: float = 0.1, what: str = ""
) -> Any:
    """Poll ``condition`` until it returns something truthy; return that.

    Raises:
        TimeoutError: it stayed falsy for ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:g}s for {what or condition!r}")
        time.sleep(interval)


@dataclass
class Prometheus:
    """A running Prometheus: its base URL, config file and process."""

    url: str
    config: Path
    process: subprocess.Popen[bytes]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result list (raises on a Prometheus error)."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5)
        body = response.json()
        if body.get("status") != "success":
            raise RuntimeError(f"query {promql!r} failed: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def value(self, promql: str) -> float | None:
        """The value of a query's single sample, or ``None`` when the result is empty."""
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None


@contextlib.contextmanager
def start_prometheus(
    targets: Mapping[str, Sequence[str]],
    *,
    rule_files: Sequence[Path] = (),
    interval: str = SCRAPE_INTERVAL,
    startup_timeout: float = 30.0,
) -> Iterator[Prometheus]:
    """Run Prometheus scraping ``targets`` (``{job: ["host:port", ...]}``) every ``interval``.

    Raises:
        RuntimeError: the binary is missing, or the server did not become ready.
    """
    binary = prometheus_binary()
    if binary is None:
        raise RuntimeError("prometheus is not installed (apt-get install prometheus)")
    with tempfile.TemporaryDirectory(prefix="soma-prom-") as tmp:
        directory = Path(tmp)
        config = directory / "prometheus.yml"
        globs = [str(path) for path in rule_files]
        text = prometheus_config(targets, interval=interval, rule_globs=globs)
        config.write_text(text, encoding="utf-8")
        port = free_port()
        log = (directory / "prometheus.log").open("wb")
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--web.enable-lifecycle",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:

            def ready() -> bool:
                if process.poll() is not None:
                    text = (directory / "prometheus.log").read_text(errors="replace")
                    raise RuntimeError(f"prometheus exited with {process.returncode}:\n{text}")
                try:
                    return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_for(ready, timeout=startup_timeout, what="prometheus to be ready")
            yield Prometheus(url=url, config=config, process=process)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - a stuck server
                process.kill()
                process.wait()
            log.close()


@dataclass
class ServedGateway:
    """A real gateway on loopback: its URL, ``host:port``, and a client with the admin key."""

    url: str
    client: httpx.Client

    @property
    def address(self) -> str:
        return self.url.removeprefix("http://")


@contextlib.contextmanager
def serve_gateway(settings: Settings) -> Iterator[ServedGateway]:
    """Serve ``create_app(settings)`` under uvicorn; the client carries the first admin key."""
    admin: list[str] = []
    with (
        run_asgi(create_app(settings, on_admin_key=admin.append)) as url,
        httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {admin[0]}"}, timeout=30
        ) as client,
    ):
        yield ServedGateway(url=url, client=client)
