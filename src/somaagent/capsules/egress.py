"""The egress proxy: how a sandboxed capsule reaches exactly the hosts its manifest lists.

Why this design: in the ``bwrap`` tier the capsule keeps its own network namespace, which has
a loopback and no route anywhere else, so nothing it does with sockets, raw or not, leaves the
sandbox. Its one way out is a Unix socket, bound into the sandbox as a file, whose other end
is this proxy in the gateway. Inside, a stdlib relay (``_relay.py``) listens on the sandbox's
own ``127.0.0.1`` and forwards each connection to that socket; ``HTTP_PROXY``/``HTTPS_PROXY``
point the capsule's HTTP clients at it. Enforcement is all on the gateway's side of the
socket: the capsule can rewrite or bypass the relay and still reach only this proxy.

The proxy speaks HTTP ``CONNECT host:port`` (tunnels, for HTTPS: the capsule's TLS goes end
to end) and plain HTTP forwarding (``GET http://host/path``). For each request it checks the
host and port against the allow-list (an entry without a port covers 80 and 443), resolves the
name itself, applies the same SSRF guard as ``http_fetch`` (no loopback, link-local or
private addresses unless the operator allows them), and connects to the checked address, so
DNS cannot answer differently in between. A refusal is an HTTP 403 whose reason phrase says
why (HTTP clients put it in their error), and is kept in :attr:`EgressProxy.refused` so the
runner can add it to a failed call's reason.

Every execution has a byte cap on what the proxy relays (both directions, all its connections
together: ``permissions.egress_mb``, else the operator's ``SOMA_CAPSULES_EGRESS_MB``). The chunk
that would cross it is not relayed: the connection is closed at once (the capsule's client sees a
truncated response or a reset, never a hang), later requests are answered 403, and
:attr:`EgressProxy.exceeded` says why, so the runner fails the call with that reason even when
the capsule swallows the error.

Simpler designs were rejected: ``--share-net`` plus a seccomp or Landlock filter cannot see
host names (and Landlock's TCP rules are per port, not per address); an nftables rule set in
the namespace needs privileges and resolves names once, at set-up.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from anyio.abc import ByteReceiveStream, ByteStream, SocketStream

from somaagent.capsules.netguard import NetworkRefused, endpoint_allowed, resolve_allowed

__all__ = ["DEFAULT_EGRESS_BYTES", "EgressProxy", "egress_proxy"]

_HEAD_LIMIT = 16 * 1024
_HEAD_TIMEOUT_S = 10.0
_CONNECT_TIMEOUT_S = 10.0
_MAX_CONNECTIONS = 32
DEFAULT_EGRESS_BYTES = 64 * 1024 * 1024
"""The cap when neither the manifest nor the operator sets one."""
_HOP_HEADERS = {b"connection", b"keep-alive", b"proxy-connection", b"proxy-authorization"}


class _BadRequest(Exception):
    """A request the proxy cannot parse (answered 400)."""


class _CapReached(Exception):
    """The execution's byte cap would be crossed: the connection ends."""


@dataclass(slots=True)
class EgressProxy:
    """One execution's proxy: its allow-list, its socket, its byte cap, what it refused and
    allowed, and how many bytes it relayed."""

    allowed: Sequence[str]
    allow_private: bool
    socket_path: Path
    max_bytes: int = DEFAULT_EGRESS_BYTES
    """Bytes relayed (both directions, every connection) before connections are cut."""
    refused: list[str] = field(default_factory=list)
    connected: list[str] = field(default_factory=list)
    relayed: int = 0
    exceeded: str | None = None
    """Why connections were cut (the byte cap was reached), or ``None``."""
    _slots: anyio.Semaphore = field(default_factory=lambda: anyio.Semaphore(_MAX_CONNECTIONS))

    async def handle(self, client: SocketStream) -> None:
        """Serve one connection from the sandbox: one request, then a tunnel or a forward."""
        async with client:
            if self.exceeded is not None:
                await _answer(client, 403, self.exceeded)
                return
            if self._slots.value == 0:
                await _answer(client, 503, "too many connections from this capsule")
                return
            async with self._slots:
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                    await self._serve(client)

    async def _serve(self, client: SocketStream) -> None:
        try:
            with anyio.fail_after(_HEAD_TIMEOUT_S):
                head, rest = await _read_head(client)
            method, host, port, forward = _parse(head)
        except (_BadRequest, TimeoutError) as exc:
            await _answer(client, 400, str(exc) or "no request head in time")
            return
        try:
            if not endpoint_allowed(host, port, self.allowed):
                raise NetworkRefused(f"{host}:{port} is not on the capsule's network allow-list")
            addresses = await resolve_allowed(host, port, allow_private=self.allow_private)
        except NetworkRefused as exc:
            self.refused.append(str(exc))
            await _answer(client, 403, str(exc))
            return
        upstream = await _connect(addresses, port)
        if isinstance(upstream, str):
            await _answer(client, 502, f"cannot connect to {host}:{port}: {upstream}")
            return
        self.connected.append(f"{host}:{port}")
        async with upstream:
            try:
                if method == b"CONNECT":
                    await client.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
                else:
                    await self._relay(upstream, forward)
                if rest:
                    await self._relay(upstream, rest)
                async with anyio.create_task_group() as group:
                    group.start_soon(self._pump, client, upstream)
                    group.start_soon(self._pump, upstream, client)
            except* _CapReached:
                pass  # both ends close as the blocks exit: the capsule sees the cut at once

    def _take(self, size: int) -> None:
        """Count ``size`` bytes against the cap; :class:`_CapReached` when they would cross it."""
        if self.exceeded is None and self.relayed + size > self.max_bytes:
            self.exceeded = (
                f"the capsule's network traffic through the egress proxy went over its "
                f"{_size(self.max_bytes)} cap (permissions.egress_mb; the operator's default: "
                "SOMA_CAPSULES_EGRESS_MB), so its connections were closed"
            )
        if self.exceeded is not None:
            raise _CapReached
        self.relayed += size

    async def _relay(self, sink: SocketStream, data: bytes) -> None:
        self._take(len(data))
        await sink.send(data)

    async def _pump(self, source: ByteReceiveStream, sink: SocketStream) -> None:
        """Copy until end of stream, then half-close (the other direction may still be busy);
        past the byte cap, :class:`_CapReached` ends both directions."""
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            async for chunk in source:
                self._take(len(chunk))
                await sink.send(chunk)
            await sink.send_eof()


def _size(count: int) -> str:
    mib = count / (1024 * 1024)
    return f"{mib:g} MiB" if mib >= 1 else f"{count // 1024} KiB"


async def _connect(addresses: list[str], port: int) -> SocketStream | str:
    """A connection to the first checked address that answers, or why none did."""
    problem = "no address"
    for address in addresses:
        try:
            with anyio.fail_after(_CONNECT_TIMEOUT_S):
                return await anyio.connect_tcp(address, port)
        except TimeoutError:
            problem = f"{address} timed out"
        except OSError as exc:
            problem = f"{address}: {exc.strerror or exc}"
    return problem


async def _read_head(client: ByteStream) -> tuple[bytes, bytes]:
    buffer = bytearray()
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > _HEAD_LIMIT:
            raise _BadRequest("request head too large")
        try:
            buffer += await client.receive(65536)
        except anyio.EndOfStream:
            raise _BadRequest("connection closed before a request") from None
    end = buffer.index(b"\r\n\r\n") + 4
    return bytes(buffer[:end]), bytes(buffer[end:])


def _split_hostport(text: str, default: int | None) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or "]" in port:
        host, port = text, ""
    host = host.strip("[]")
    if not host:
        raise _BadRequest(f"no host in {text!r}")
    if not port:
        if default is None:
            raise _BadRequest(f"CONNECT needs host:port, got {text!r}")
        return host, default
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise _BadRequest(f"bad port in {text!r}")
    return host, int(port)


def _parse(head: bytes) -> tuple[bytes, str, int, bytes]:
    """``(method, host, port, head to send upstream)`` from a proxy request head."""
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        raise _BadRequest("not an HTTP/1.x request line")
    method, target, version = parts
    text = target.decode("latin-1")
    if method == b"CONNECT":
        host, port = _split_hostport(text, None)
        return method, host, port, b""
    if not text.lower().startswith("http://"):
        raise _BadRequest("a proxied request needs an absolute http:// URL (use CONNECT for TLS)")
    authority, slash, path = text[len("http://") :].partition("/")
    authority = authority.rpartition("@")[2]  # no credentials in the authority
    host, port = _split_hostport(authority, 80)
    # Origin-form request line; hop-by-hop headers dropped; one request per connection, so a
    # reused connection cannot carry a second request to a host nobody checked.
    out = [b" ".join([method, ("/" + path if slash else "/").encode("latin-1"), version])]
    for line in lines[1:]:
        name = line.split(b":", 1)[0].strip().lower()
        if name not in _HOP_HEADERS:
            out.append(line)
    out.append(b"Connection: close")
    return method, host, port, b"\r\n".join(out) + b"\r\n\r\n"


async def _answer(client: ByteStream, status: int, reason: str) -> None:
    phrase = " ".join(reason.split())[:300]
    body = (phrase + "\n").encode()
    head = (
        f"HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        await client.send(head.encode() + body)


def _socket_path(root: Path) -> Path:
    folder = root / "egress"
    path = folder / f"{uuid.uuid4().hex[:16]}.sock"
    if len(str(path)) < 100:  # sun_path holds 108 bytes
        folder.mkdir(mode=0o711, exist_ok=True)
        return path
    return Path(tempfile.gettempdir()) / f"soma-egress-{uuid.uuid4().hex[:16]}.sock"


@contextlib.asynccontextmanager
async def egress_proxy(
    root: Path,
    allowed: Sequence[str],
    *,
    allow_private: bool,
    uid: int | None,
    max_bytes: int = DEFAULT_EGRESS_BYTES,
) -> AsyncIterator[EgressProxy]:
    """A proxy on a fresh Unix socket for one execution, closed (connections too) on exit.

    The socket belongs to the execution's uid (mode 0600): no other sandbox can connect to it.
    """
    path = _socket_path(root)
    proxy = EgressProxy(
        allowed=list(allowed), allow_private=allow_private, socket_path=path, max_bytes=max_bytes
    )
    listener = await anyio.create_unix_listener(path)
    try:
        os.chmod(path, 0o600)
        if uid is not None:
            os.chown(path, uid, uid)
        async with anyio.create_task_group() as group:
            group.start_soon(listener.serve, proxy.handle)
            try:
                yield proxy
            finally:
                group.cancel_scope.cancel()
    finally:
        await listener.aclose()
        with contextlib.suppress(OSError):
            path.unlink()
