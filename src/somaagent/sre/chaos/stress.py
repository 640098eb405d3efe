"""CPU and memory stress on this machine, for the stress experiments' local mode.

Each worker is a child process (:mod:`somaagent.sre.chaos._stress_worker`) with a deadline of
its own and a watch on its parent, so stress never outlives the experiment, even when ``soma``
is killed outright. :meth:`Stress.stop` ends them at once.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from datetime import timedelta

from somaagent.sre import children

__all__ = ["DEFAULT_MEMORY_CAP", "Stress", "memory_bytes", "total_memory"]

DEFAULT_MEMORY_CAP = 1 << 30
"""The most memory a local memory stress takes unless told otherwise (1 GiB)."""


def total_memory() -> int:
    """This machine's physical memory in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def available_memory() -> int:
    """Memory available to new processes (``MemAvailable``), or the total where unknown."""
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return total_memory()


def memory_bytes(percent: float, *, cap: int = DEFAULT_MEMORY_CAP) -> int:
    """How much a local memory stress of ``percent`` takes: that share of the total, never more
    than ``cap`` nor more than half of what is available (so it stresses, not kills)."""
    wanted = int(total_memory() * percent / 100)
    return max(0, min(wanted, cap, available_memory() // 2))


class Stress:
    """A set of stress worker processes.

    Args:
        kind: ``cpu`` or ``memory``.
        amount: CPU load percent per worker, or bytes per memory worker.
        workers: how many processes.
        duration: the workers' own deadline (a safety net: :meth:`stop` comes first).
    """

    def __init__(self, kind: str, amount: int, *, workers: int, duration: timedelta) -> None:
        if kind not in ("cpu", "memory"):
            raise ValueError(f"unknown stress kind {kind!r}")
        self.kind = kind
        self.amount = amount
        self.workers = workers
        self.duration = duration
        self.processes: list[subprocess.Popen[str]] = []

    def start(self) -> None:
        """Start the workers and wait until each is under way (memory allocated)."""
        for _ in range(self.workers):
            process = children.spawn(
                [
                    sys.executable,
                    "-m",
                    "somaagent.sre.chaos._stress_worker",
                    self.kind,
                    str(self.amount),
                    str(self.duration.total_seconds()),
                ],
                stdout=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
            )
            self.processes.append(process)
        for process in self.processes:
            assert process.stdout is not None
            process.stdout.readline()  # "ready", or "" if it died

    @property
    def running(self) -> bool:
        """Whether any worker is still alive."""
        return any(process.poll() is None for process in self.processes)

    def stop(self) -> None:
        """End every worker (idempotent)."""
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            children.end(process, grace=5)
            if process.stdout is not None:
                process.stdout.close()

    def describe(self) -> str:
        """``cpu 80% × 2 workers`` or ``memory 512 MiB × 1 worker``."""
        amount = f"{self.amount}%" if self.kind == "cpu" else f"{self.amount / 2**20:.0f} MiB"
        plural = "s" if self.workers != 1 else ""
        return f"{self.kind} {amount} × {self.workers} worker{plural}"
