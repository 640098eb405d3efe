"""A fault proxy you leave running, and the small HTTP API that sets its faults.

``soma chaos proxy --listen 127.0.0.1:16333 --upstream 127.0.0.1:6333`` starts a clean
proxy: point the dependency's client at it once (``SOMA_VECTOR_STORE_URL=qdrant+http://
127.0.0.1:16333``) and leave it there. ``soma chaos run PRESET --local --proxy-control URL``
then switches faults on and off through the control API, as Toxiproxy's is used:

=========================== =========================================================
``GET /faults``             the faults on, when they clear themselves, the counters
``PUT /faults``             a :class:`ProxyFaults` body, plus ``ttl_s`` (default 300)
``DELETE /faults``          heal
=========================== =========================================================

A fault set through the API clears itself after ``ttl_s``, so a chaos run killed outright
leaves the proxy clean within that time. The API listens on loopback by default; it has no
authentication, so keep it there. The server is the standard library's threaded HTTP server:
the API takes a few requests per experiment, so it needs nothing faster.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import httpx
from pydantic import Field
from pydantic import ValidationError as PydanticValidationError

from somaagent.errors import ConfigurationError, FaultInjectionError
from somaagent.sre.chaos.proxy import ProxyFaults, ThreadedProxy, parse_host_port

__all__ = [
    "DEFAULT_CONTROL",
    "ControlledProxy",
    "ProxyControlClient",
    "TimedFaults",
    "controlled_proxy",
]

DEFAULT_CONTROL = "127.0.0.1:8474"
MAX_BODY = 64 * 1024


class TimedFaults(ProxyFaults):
    """Faults for ``PUT /faults``: a :class:`ProxyFaults` that clears itself after ``ttl_s``."""

    ttl_s: float = Field(default=300, gt=0, le=86_400)

    def faults(self) -> ProxyFaults:
        """The faults without the TTL."""
        return ProxyFaults.model_validate(self.model_dump(exclude={"ttl_s"}))


class ControlledProxy:
    """A :class:`ThreadedProxy` with a control API; use it as a context manager.

    Args:
        upstream: the dependency, ``host:port``.
        listen: where the proxy listens, ``host:port`` (port 0 picks one).
        control: where the control API listens, ``host:port`` (port 0 picks one).
    """

    def __init__(self, upstream: str, *, listen: str, control: str = DEFAULT_CONTROL) -> None:
        self.upstream = upstream
        self.proxy = ThreadedProxy(parse_host_port(upstream), listen=parse_host_port(listen))
        self._control = parse_host_port(control)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self.expires_at: float | None = None

    @property
    def listen(self) -> str:
        """Where the proxy listens."""
        host, port = self.proxy.address
        return f"{host}:{port}"

    @property
    def control_url(self) -> str:
        """The control API's base URL."""
        if self._server is None:
            raise RuntimeError("the control API is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> ControlledProxy:
        self.proxy.__enter__()
        try:
            self._server = ThreadingHTTPServer(self._control, _handler(self))
        except OSError as exc:
            self.proxy.close()
            where = f"{self._control[0]}:{self._control[1]}"
            raise ConfigurationError(f"cannot listen on {where}: {exc.strerror}") from exc
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="soma-proxy-control", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Heal, stop the control API and the proxy (idempotent)."""
        self._cancel_timer()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.proxy.close()

    def apply(self, faults: ProxyFaults, *, ttl_s: float | None = None) -> None:
        """Switch to ``faults``; with ``ttl_s``, they clear themselves after that long."""
        with self._lock:
            self._cancel_timer()
            self.proxy.apply(faults)
            if ttl_s is not None and faults.active:
                self.expires_at = time.time() + ttl_s
                self._timer = threading.Timer(ttl_s, self._expire)
                self._timer.daemon = True
                self._timer.start()

    def clear(self) -> None:
        """Heal now."""
        with self._lock:
            self._cancel_timer()
            self.proxy.clear()

    def state(self) -> dict[str, Any]:
        """What ``GET /faults`` answers."""
        expires = self.expires_at
        return {
            "listen": self.listen,
            "upstream": self.upstream,
            "faults": self.proxy.faults.model_dump(mode="json"),
            "description": self.proxy.faults.describe(),
            "expires_at": None
            if expires is None
            else datetime.fromtimestamp(expires, UTC).isoformat(),
            "stats": asdict(self.proxy.proxy.stats),
        }

    def _expire(self) -> None:
        with self._lock:
            self._timer = None
            self.expires_at = None
            self.proxy.clear()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.expires_at = None


def _handler(owner: ControlledProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "soma-chaos-proxy"

        def log_message(self, format: str, *args: Any) -> None:
            return None  # the CLI prints what matters; request lines would be noise

        def _answer(self, status: HTTPStatus, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _problem(self, status: HTTPStatus, detail: str) -> None:
            self._answer(status, {"title": status.phrase, "status": int(status), "detail": detail})

        def _routed(self) -> bool:
            if self.path.rstrip("/") != "/faults":
                self._problem(HTTPStatus.NOT_FOUND, "the control API has /faults only")
                return False
            return True

        def do_GET(self) -> None:
            if self._routed():
                self._answer(HTTPStatus.OK, owner.state())

        def do_DELETE(self) -> None:
            if self._routed():
                owner.clear()
                self._answer(HTTPStatus.OK, owner.state())

        def do_PUT(self) -> None:
            if not self._routed():
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._problem(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "the body is too large")
                return
            try:
                timed = TimedFaults.model_validate_json(self.rfile.read(length) or b"{}")
            except PydanticValidationError as exc:
                problems = [
                    f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
                    for e in exc.errors()
                ]
                self._problem(HTTPStatus.UNPROCESSABLE_ENTITY, "; ".join(problems))
                return
            owner.apply(timed.faults(), ttl_s=timed.ttl_s)
            self._answer(HTTPStatus.OK, owner.state())

    return Handler


@contextlib.contextmanager
def controlled_proxy(
    upstream: str, *, listen: str, control: str = DEFAULT_CONTROL
) -> Iterator[ControlledProxy]:
    """A running :class:`ControlledProxy`, stopped (and healed) on exit."""
    with ControlledProxy(upstream, listen=listen, control=control) as proxy:
        yield proxy


class ProxyControlClient:
    """Sets the faults of a running ``soma chaos proxy`` through its control API.

    Args:
        url: the control API, such as ``http://127.0.0.1:8474``.
        timeout: seconds per request.

    Every failure is a :class:`~somaagent.errors.FaultInjectionError` naming the proxy.
    """

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        if not url.startswith(("http://", "https://")):
            url = f"http://{url}"
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout)

    def _send(self, method: Literal["GET", "PUT", "DELETE"], body: Any = None) -> dict[str, Any]:
        try:
            response = self._http.request(method, "/faults", json=body)
        except httpx.HTTPError as exc:
            raise FaultInjectionError(
                f"the fault proxy's control API at {self.url} is unreachable: {exc}",
                target=self.url,
            ) from exc
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.status_code != 200 or not isinstance(answer, dict):
            detail = answer.get("detail") if isinstance(answer, dict) else response.text[:200]
            raise FaultInjectionError(
                f"the fault proxy at {self.url} answered HTTP {response.status_code}: {detail}",
                target=self.url,
            )
        return answer

    def state(self) -> dict[str, Any]:
        """The proxy's faults, expiry and counters."""
        return self._send("GET")

    def apply(self, faults: ProxyFaults, *, ttl_s: float) -> dict[str, Any]:
        """Switch the proxy to ``faults`` for at most ``ttl_s`` seconds."""
        return self._send("PUT", {**faults.model_dump(mode="json"), "ttl_s": ttl_s})

    def clear(self) -> dict[str, Any]:
        """Heal the proxy."""
        return self._send("DELETE")

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()
