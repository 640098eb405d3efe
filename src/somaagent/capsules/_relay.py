"""The sandbox side of the egress proxy: a TCP listener on the sandbox's own loopback that
relays each connection to the gateway's proxy over a Unix socket, then execs the capsule.

Copied next to a capsule's code and run by a bare interpreter (``python -I -S``) inside
bubblewrap, so it uses the standard library only. The sandbox has its own network namespace
with nothing but a loopback; the Unix socket bound into it is its one way out, and the proxy
at its other end decides what may be reached. Clients find the relay through ``HTTP_PROXY``
and ``HTTPS_PROXY``.

Usage: ``python -I -S _relay.py SOCKET PORT -- ARGV...``. The listening socket is bound
before the fork, so the capsule can connect as soon as it starts; the relay runs in the forked
child (stdio closed, so the capsule's pipes end when the capsule ends) and the parent execs
``ARGV``. Exit status 126 when the relay cannot listen.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported after the fork, in the relay only: it costs ~50 ms
    import asyncio


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.close()


async def _serve(listener: socket.socket, path: str, parent: int) -> None:
    import asyncio

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(path)
        except OSError:
            writer.close()
            return
        try:
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        finally:
            writer.close()
            up_writer.close()

    server = await asyncio.start_server(relay, sock=listener)
    async with server:
        # Outlive the capsule by at most a moment (bubblewrap's PID namespace ends it anyway).
        while os.getppid() == parent:
            await asyncio.sleep(0.5)


def main(argv: list[str]) -> int:
    """Listen, fork the relay, exec the capsule."""
    split = argv.index("--")
    path, port = argv[1], int(argv[2])
    command = argv[split + 1 :]
    try:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
    except OSError as exc:
        print(f"egress relay: cannot listen on 127.0.0.1:{port}: {exc}", file=sys.stderr)
        return 126
    parent = os.getpid()
    if os.fork() == 0:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        try:
            import asyncio

            asyncio.run(_serve(listener, path, parent))
        finally:
            os._exit(0)
    listener.close()
    os.execvp(command[0], command)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv))
