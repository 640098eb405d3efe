"""A fault-injecting TCP proxy, in the manner of Toxiproxy, for chaos on one machine.

Put it between a client and a dependency (the gateway and its model server, the gateway and
its vector store) and change its :class:`ProxyFaults` while traffic flows:

* ``latency_ms`` ± ``jitter_ms``: each chunk is held that long; order is kept;
* ``loss_percent``: each chunk is "lost" with that chance and arrives one retransmission
  timeout later (doubling if lost again), which is what packet loss does to a TCP stream;
* ``bandwidth_bytes_per_s``: a paced byte rate;
* ``reset``: open connections are reset (RST) and new ones are reset on arrival;
* ``partition``: nothing passes and nothing is lost; connections stall until healed (or until
  the client gives up), new connections are accepted but not forwarded.

Delay and loss act on ``direction`` (``downstream``, the dependency's answers, by default);
bandwidth and partition act both ways. :meth:`FaultProxy.clear` heals everything at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from somaagent.sre.chaos._delays import fault_delay

__all__ = [
    "FaultProxy",
    "ProxyFaults",
    "ProxyStats",
    "ThreadedProxy",
    "parse_host_port",
    "threaded_proxy",
]

Direction = Literal["upstream", "downstream"]
_CHUNK = 65536


class ProxyFaults(BaseModel):
    """The faults a :class:`FaultProxy` applies; the default applies none."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latency_ms: float = Field(default=0, ge=0)
    jitter_ms: float = Field(default=0, ge=0)
    loss_percent: float = Field(default=0, ge=0, le=100)
    loss_rto_ms: float = Field(default=200, gt=0)
    bandwidth_bytes_per_s: int | None = Field(default=None, ge=1)
    reset: bool = False
    partition: bool = False
    direction: Literal["upstream", "downstream", "both"] = "downstream"

    @property
    def active(self) -> bool:
        """Whether any fault is on."""
        return self != ProxyFaults(direction=self.direction, loss_rto_ms=self.loss_rto_ms)

    def describe(self) -> str:
        """A short human description, such as ``latency 100 ms ± 10 ms (downstream)``."""
        parts = []
        if self.latency_ms or self.jitter_ms:
            jitter = f" ± {self.jitter_ms:g} ms" if self.jitter_ms else ""
            parts.append(f"latency {self.latency_ms:g} ms{jitter}")
        if self.loss_percent:
            parts.append(f"loss {self.loss_percent:g}%")
        if parts:
            parts[-1] += f" ({self.direction})"
        if self.bandwidth_bytes_per_s:
            parts.append(f"bandwidth {self.bandwidth_bytes_per_s} B/s")
        if self.reset:
            parts.append("connection reset")
        if self.partition:
            parts.append("partition")
        return ", ".join(parts) or "no fault"

    def acts_on(self, direction: Direction) -> bool:
        """Whether delay and loss apply to bytes flowing ``direction``."""
        return self.direction in ("both", direction)


@dataclass
class ProxyStats:
    """Counters since the proxy started."""

    connections: int = 0
    active: int = 0
    bytes_upstream: int = 0
    bytes_downstream: int = 0
    resets: int = 0
    delayed_chunks: int = 0
    lost_chunks: int = 0


@dataclass(eq=False)
class _Connection:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def reset(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                _abort_with_rst(writer)


def _abort_with_rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def parse_host_port(value: str) -> tuple[str, int]:
    """``"127.0.0.1:6333"`` as ``("127.0.0.1", 6333)`` (``[::1]:80`` for IPv6)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{value!r} is not host:port")
    return host.strip("[]") or "127.0.0.1", int(port)


class FaultProxy:
    """An asyncio TCP proxy whose faults can change while it runs.

    Args:
        upstream: the dependency's ``(host, port)``.
        listen: where to listen; port 0 picks a free one (see :attr:`address`).
        seed: seeds the random jitter and loss, for repeatable tests.
        connect_timeout: seconds to wait for the dependency when a client connects.
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        listen: tuple[str, int] = ("127.0.0.1", 0),
        seed: int | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        self.upstream = upstream
        self.listen = listen
        self.faults = ProxyFaults()
        self.stats = ProxyStats()
        self._random = random.Random(seed)
        self._connect_timeout = connect_timeout
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._healed: asyncio.Event | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The ``(host, port)`` the proxy listens on."""
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def start(self) -> None:
        """Start listening."""
        self._healed = asyncio.Event()
        self._healed.set()
        self._server = await asyncio.start_server(
            self._serve, self.listen[0], self.listen[1], reuse_address=True
        )

    def apply(self, faults: ProxyFaults) -> None:
        """Switch to ``faults`` now (call from the proxy's event loop)."""
        self.faults = faults
        if self._healed is not None:
            if faults.partition:
                self._healed.clear()
            else:
                self._healed.set()
        if faults.reset:
            for connection in list(self._connections):
                connection.reset()
                self.stats.resets += 1

    def clear(self) -> None:
        """Remove every fault (the rollback)."""
        self.apply(ProxyFaults())

    async def aclose(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            for writer in (connection.client, connection.upstream):
                if writer is not None:
                    writer.transport.abort()
            for task in connection.tasks:
                task.cancel()
        for connection in list(self._connections):
            await asyncio.gather(*connection.tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        if self.faults.reset:
            self.stats.resets += 1
            _abort_with_rst(writer)
            return
        connection = _Connection(client=writer)
        self._connections.add(connection)
        self.stats.active += 1
        try:
            await self._wait_healed()
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(*self.upstream), self._connect_timeout
                )
            except (OSError, TimeoutError):
                _abort_with_rst(writer)  # the dependency is down: so is the path through us
                return
            connection.upstream = up_writer
            connection.tasks = [
                asyncio.create_task(self._pipe(reader, up_writer, "upstream")),
                asyncio.create_task(self._pipe(up_reader, writer, "downstream")),
            ]
            await asyncio.gather(*connection.tasks, return_exceptions=True)
        finally:
            self._connections.discard(connection)
            self.stats.active -= 1
            for end in (writer, connection.upstream):
                if end is not None and not end.is_closing():
                    end.close()

    async def _wait_healed(self) -> None:
        if self._healed is not None:
            await self._healed.wait()

    def _delay_for(self, direction: Direction) -> float:
        faults = self.faults
        if not faults.acts_on(direction):
            return 0.0
        drawn = fault_delay(
            self._random,
            latency_ms=faults.latency_ms,
            jitter_ms=faults.jitter_ms,
            loss_percent=faults.loss_percent,
            loss_rto_ms=faults.loss_rto_ms,
        )
        self.stats.delayed_chunks += drawn.delayed
        self.stats.lost_chunks += drawn.lost
        return drawn.seconds

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: Direction
    ) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(maxsize=64)

        async def read_side() -> None:
            last_due = 0.0
            try:
                while True:
                    await self._wait_healed()
                    data = await reader.read(_CHUNK)
                    if not data:
                        break
                    last_due = max(loop.time() + self._delay_for(direction), last_due)
                    await queue.put((last_due, data))
            except (ConnectionError, OSError):
                pass
            finally:
                await queue.put(None)

        feeder = asyncio.create_task(read_side())
        try:
            while (item := await queue.get()) is not None:
                due, data = item
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                await self._wait_healed()
                await self._send(writer, data, direction)
            if writer.can_write_eof() and not writer.is_closing():
                writer.write_eof()
        except (ConnectionError, OSError):
            writer.transport.abort()
        finally:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder

    async def _send(self, writer: asyncio.StreamWriter, data: bytes, direction: Direction) -> None:
        rate = self.faults.bandwidth_bytes_per_s
        step = max(1, rate // 10) if rate else len(data)
        for start in range(0, len(data), step):
            piece = data[start : start + step]
            writer.write(piece)
            await writer.drain()
            if direction == "upstream":
                self.stats.bytes_upstream += len(piece)
            else:
                self.stats.bytes_downstream += len(piece)
            if rate := self.faults.bandwidth_bytes_per_s:
                await asyncio.sleep(len(piece) / rate)


class ThreadedProxy:
    """A :class:`FaultProxy` on its own event loop in a background thread, for sync callers.

    ``with ThreadedProxy(("127.0.0.1", 6333), listen=("127.0.0.1", 16333)) as proxy:`` starts
    it; :meth:`apply` and :meth:`clear` are safe from any thread; leaving the block stops it.
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        listen: tuple[str, int] = ("127.0.0.1", 0),
        seed: int | None = None,
    ) -> None:
        self.proxy = FaultProxy(upstream, listen=listen, seed=seed)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> ThreadedProxy:
        self._thread.start()
        try:
            self._call(self.proxy.start())
        except BaseException:
            self._stop_loop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def address(self) -> tuple[str, int]:
        """Where the proxy listens."""
        return self.proxy.address

    @property
    def faults(self) -> ProxyFaults:
        """The faults now on."""
        return self.proxy.faults

    def apply(self, faults: ProxyFaults) -> None:
        """Switch to ``faults``, and wait until they are in force."""
        self._call(self._apply(faults))

    def clear(self) -> None:
        """Remove every fault, and wait until they are gone."""
        self.apply(ProxyFaults())

    def close(self) -> None:
        """Heal, stop the proxy and its thread (idempotent)."""
        if self._loop.is_closed():
            return
        if self._loop.is_running():
            with contextlib.suppress(Exception):
                self._call(self._apply(ProxyFaults()))
                self._call(self.proxy.aclose())
        self._stop_loop()

    async def _apply(self, faults: ProxyFaults) -> None:
        self.proxy.apply(faults)

    def _call(self, coroutine: Coroutine[Any, Any, None]) -> None:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        future.result(timeout=30)

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()


@contextlib.contextmanager
def threaded_proxy(upstream: str, *, listen: str = "127.0.0.1:0") -> Iterator[ThreadedProxy]:
    """``ThreadedProxy`` from ``host:port`` strings."""
    with ThreadedProxy(parse_host_port(upstream), listen=parse_host_port(listen)) as proxy:
        yield proxy
