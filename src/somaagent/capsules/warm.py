"""The warm pool: sandboxes started ahead of the call, each used for exactly one call.

A cold call pays for the sandbox, the interpreter, the capsule's imports and the MCP handshake
before its ``tools/call``. A warm process has done all of that while idle, so the call is one
round trip. Safety comes from never reusing a process: each one serves a single call and is
then discarded (killed, its work folder removed, its uid swept), whatever the call's outcome,
so no state, file or tenant's data can pass from one call to the next; a process that has not
yet been handed a call has seen no tenant's input. Pools are kept per capsule version (content
hash and runtime) and sandbox tier, ``size`` processes each, a process idle for ``idle_s``
is discarded, and at most ``max_total`` are warm at once across all versions.

The pool only works inside :meth:`WarmPool.running` (the gateway's lifespan), which owns the
tasks that hold the processes; outside it every call is cold.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

import anyio
from anyio.abc import TaskGroup
from mcp import ClientSession

from somaagent.capsules.transport import SandboxedProcess

__all__ = ["WarmPool", "WarmProcess"]

logger = logging.getLogger(__name__)


@dataclass(eq=False, slots=True)
class WarmProcess:
    """A started sandbox with an initialised MCP session, waiting for its one call."""

    session: ClientSession
    process: SandboxedProcess
    claimed: anyio.Event = field(default_factory=anyio.Event)
    released: anyio.Event = field(default_factory=anyio.Event)


Opener = Callable[[], AbstractAsyncContextManager[WarmProcess]]
"""Starts one sandbox and yields it ready; leaving the context kills it and cleans up."""


class WarmPool:
    """Pre-started single-use sandboxes, ``size`` per key."""

    def __init__(self, size: int, *, idle_s: float = 60.0, max_total: int = 16) -> None:
        self.size = size
        self.idle_s = idle_s
        self.max_total = max_total
        self.hits = 0
        self.misses = 0
        self._ready: dict[Hashable, list[WarmProcess]] = {}
        self._starting: dict[Hashable, int] = {}
        self._alive = 0
        self._group: TaskGroup | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[WarmPool]:
        """Keep processes warm until the block ends; then every warm process is killed."""
        async with anyio.create_task_group() as group:
            self._group = group
            try:
                yield self
            finally:
                self._group = None
                self._ready.clear()
                group.cancel_scope.cancel()

    def ready(self, key: Hashable) -> int:
        """How many processes wait for ``key`` now."""
        return len(self._ready.get(key, []))

    def take(self, key: Hashable) -> WarmProcess | None:
        """A warm process for ``key`` (now the caller's alone), or ``None``."""
        ready = self._ready.get(key, [])
        while ready:
            warm = ready.pop(0)
            if warm.process.failure is None and warm.process.running:
                warm.claimed.set()
                self.hits += 1
                return warm
            warm.claimed.set()  # died while idle: let its task clean up
            warm.released.set()
        self.misses += 1
        return None

    def refill(self, key: Hashable, opener: Opener) -> None:
        """Start processes in the background until ``key`` has ``size`` ready or starting."""
        if self._group is None:
            return
        while (
            self.ready(key) + self._starting.get(key, 0) < self.size
            and self._alive < self.max_total
        ):
            self._starting[key] = self._starting.get(key, 0) + 1
            self._alive += 1
            self._group.start_soon(self._keep, key, opener)

    async def _keep(self, key: Hashable, opener: Opener) -> None:
        started = False
        try:
            async with opener() as warm:
                self._starting[key] -= 1
                started = True
                if self._group is None:
                    return
                self._ready.setdefault(key, []).append(warm)
                with anyio.move_on_after(self.idle_s):
                    await warm.claimed.wait()
                if not warm.claimed.is_set():  # idle too long: discard it
                    with contextlib.suppress(ValueError):
                        self._ready.get(key, []).remove(warm)
                    return
                await warm.released.wait()  # its one call is done: leaving kills it
        except Exception as exc:  # a process that fails to start is simply not warm
            logger.warning("a warm capsule sandbox failed to start: %s", exc)
        finally:
            if not started:
                self._starting[key] -= 1
            self._alive -= 1
