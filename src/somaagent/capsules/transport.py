"""The MCP stdio transport to a sandboxed process, with the sandbox's output limits.

The official client's ``stdio_client`` starts its own process; a capsule's process must start
under the sandbox (its uid, session and limits) and have its output capped, so this transport
starts it and hands the ``mcp`` :class:`~mcp.ClientSession` the same pair of message streams.
Whatever ends the process (a timeout, an output limit, a signal) is kept as :attr:`failure` so
the runner can say why a call failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import mcp_types
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.shared.message import SessionMessage

from somaagent.capsules.sandbox import Limits, scrubbed_env, sweep_uid

__all__ = ["SandboxedProcess"]

_SIGNALS = {
    signal.SIGXCPU: "it used up its CPU time limit",
    signal.SIGKILL: "it was killed (memory or process limit, or the timeout)",
    signal.SIGSEGV: "it crashed (segmentation fault)",
    signal.SIGXFSZ: "it wrote a file over its size limit",
}


class SandboxedProcess:
    """One capsule process speaking MCP over stdio; ``async with`` yields its streams."""

    def __init__(
        self,
        command: list[str],
        *,
        cwd: Path,
        uid: int | None,
        limits: Limits,
        always_sweep: bool = False,
        home: str = "/work",
    ) -> None:
        self.command = command
        self.always_sweep = always_sweep
        self.home = home
        self.cwd = cwd
        self.uid = uid
        self.limits = limits
        self.failure: str | None = None
        self.stderr_tail = b""
        self._process: asyncio.subprocess.Process | None = None
        self._stderr_bytes = 0

    @contextlib.asynccontextmanager
    async def streams(
        self,
    ) -> AsyncIterator[
        tuple[
            MemoryObjectReceiveStream[SessionMessage | Exception],
            MemoryObjectSendStream[SessionMessage],
        ]
    ]:
        """Start the process and bridge its pipes to the session's message streams."""
        self._process = await asyncio.create_subprocess_exec(
            *self.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            env=scrubbed_env(self.home),
            cwd=str(self.cwd),
            limit=self.limits.output_bytes + 64 * 1024,
        )
        incoming_send, incoming = anyio.create_memory_object_stream[SessionMessage | Exception](16)
        outgoing, outgoing_receive = anyio.create_memory_object_stream[SessionMessage](16)
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._read_stdout, incoming_send)
                group.start_soon(self._write_stdin, outgoing_receive)
                group.start_soon(self._read_stderr)
                try:
                    yield incoming, outgoing
                finally:
                    group.cancel_scope.cancel()
        finally:
            await self.kill()

    async def _read_stdout(self, send: MemoryObjectSendStream[SessionMessage | Exception]) -> None:
        assert self._process is not None and self._process.stdout is not None
        async with send:
            while True:
                try:
                    line = await self._process.stdout.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    self._fail(
                        f"its output went over the {self.limits.output_bytes // 1024} KiB limit"
                    )
                    return
                if not line:
                    await self._reap()
                    return
                if not line.strip():
                    continue
                try:
                    message = mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False)
                except ValueError:
                    self._fail("it wrote something other than MCP JSON-RPC to stdout")
                    return
                await send.send(SessionMessage(message))

    async def _write_stdin(self, receive: MemoryObjectReceiveStream[SessionMessage]) -> None:
        assert self._process is not None and self._process.stdin is not None
        stdin = self._process.stdin
        async with receive:
            async for item in receive:
                data = item.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
                try:
                    stdin.write(data.encode())
                    await stdin.drain()
                except (ConnectionError, OSError):
                    return

    async def _read_stderr(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        while chunk := await self._process.stderr.read(65536):
            self._stderr_bytes += len(chunk)
            self.stderr_tail = (self.stderr_tail + chunk)[-2000:]
            if self._stderr_bytes > self.limits.output_bytes:
                self._fail(f"its output went over the {self.limits.output_bytes // 1024} KiB limit")
                return

    @property
    def running(self) -> bool:
        """Whether the process has started and not yet ended."""
        return self._process is not None and self._process.returncode is None

    def _fail(self, reason: str) -> None:
        if self.failure is None:
            self.failure = reason
        self._signal_group()

    def _signal_group(self) -> None:
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._process.pid, signal.SIGKILL)

    async def _reap(self) -> None:
        assert self._process is not None
        with anyio.move_on_after(1.0):
            code = await self._process.wait()
            if self.failure is None and code != 0:
                self.failure = self.exit_reason(code)

    def exit_reason(self, code: int) -> str:
        """Why the process ended, in words, from its exit status."""
        # bwrap reports a child killed by a signal as 128 + the signal's number.
        number = -code if code < 0 else code - 128 if code > 128 else 0
        if number:
            with contextlib.suppress(ValueError):
                return _SIGNALS.get(signal.Signals(number), f"it was killed by signal {number}")
        tail = self.stderr_tail.decode(errors="replace").strip().splitlines()
        detail = f": {tail[-1][:300]}" if tail else ""
        return f"it exited with status {code}{detail}"

    def timed_out(self) -> None:
        """Record a wall-clock timeout and kill the whole process group."""
        self._fail(f"it ran past its {self.limits.timeout_s:g} s timeout")

    async def kill(self) -> None:
        """Kill the process group, reap it and sweep the execution's uid."""
        process = self._process
        if process is None:
            return
        self._signal_group()
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(2.0):
                await process.wait()
            # The pipes stay open while a reader stopped early (an output limit): close them.
            transport = getattr(process, "_transport", None)
            if transport is not None:
                transport.close()
            if self.uid is not None and (self.always_sweep or self.failure is not None):
                await anyio.to_thread.run_sync(sweep_uid, self.uid)
