"""Run any ASGI app under a real uvicorn server on loopback, for tests.

``run_asgi`` binds a free port on 127.0.0.1 itself (so there is no race for the port), serves
the app from a background thread with its own event loop, waits until the server accepts
connections, and on exit stops it and joins the thread::

    with run_asgi(app) as base_url:
        httpx.get(f"{base_url}/healthz")

It is generic: the fake vendor servers use it, and so can tests of the real gateway.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

__all__ = ["free_port", "run_asgi"]


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (for servers that bind by number)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def run_asgi(
    app: Any,
    *,
    host: str = "127.0.0.1",
    startup_timeout: float = 15.0,
    **config: Any,
) -> Iterator[str]:
    """Serve ``app`` on a free loopback port for the duration of the ``with`` block.

    Args:
        app: an ASGI application (FastAPI, Starlette, or a bare callable).
        host: the loopback address to bind.
        startup_timeout: seconds to wait for the server (and the app's lifespan startup).
        **config: extra :class:`uvicorn.Config` settings, e.g. ``lifespan="on"``.

    Yields:
        The base URL, such as ``http://127.0.0.1:51234`` (no trailing slash).

    Raises:
        RuntimeError: the server did not start in time, or stopped while starting.
    """
    settings: dict[str, Any] = {
        "log_level": "warning",
        "ws": "none",  # no websocket stack: nothing here needs it, and it keeps imports quiet
        "access_log": False,
        # Waiting requests (a stalled fake answer) must not hold up shutdown for long.
        "timeout_graceful_shutdown": 2,
    }
    settings.update(config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, **settings))
    failure: list[BaseException] = []

    def serve() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # SystemExit from a failed lifespan startup, too
            failure.append(exc)

    thread = threading.Thread(target=serve, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError(f"the ASGI server on port {port} stopped while starting") from (
                    failure[0] if failure else None
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"the ASGI server on port {port} did not start in time")
            time.sleep(0.01)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=startup_timeout)
        sock.close()
        if thread.is_alive():  # pragma: no cover - only when the app refuses to stop
            raise RuntimeError(f"the ASGI server on port {port} did not stop")
