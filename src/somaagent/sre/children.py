"""The child processes SRE commands start (k6, prometheus, stress workers), ended on every exit.

Every child is started through :func:`spawn`, which registers it until it has been waited for.
A command that starts children runs inside :func:`ended_on_exit`: within it SIGTERM raises
:class:`KeyboardInterrupt` like Ctrl-C does, and however the block is left (normally, by an
error, Ctrl-C or SIGTERM) every child still running is asked to stop with its own signal (k6
takes SIGINT, so it still writes its summary; the others SIGTERM), given a few seconds, then
killed. An :mod:`atexit` hook does the same for children nobody ended, such as k6 started by
a daemon thread when the interpreter exits under it.

Only SIGKILL of the parent skips all of this; each child then ends by its own deadline (a k6
run's duration, a stress worker's), or, for ``prometheus``, when stopped.
"""

from __future__ import annotations

import atexit
import contextlib
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = ["end", "end_all", "ended_on_exit", "live", "sigterm_interrupts", "spawn"]

GRACE_S = 10.0
"""How long a child has to stop after its signal before it is killed."""

_lock = threading.Lock()
_live: dict[int, tuple[subprocess.Popen[Any], int]] = {}


def spawn(
    command: Sequence[str], *, stop_signal: int = signal.SIGTERM, **popen: Any
) -> subprocess.Popen[Any]:
    """Start ``command`` (``subprocess.Popen`` keyword arguments in ``popen``) and register it.

    Args:
        stop_signal: what asks it to stop (SIGINT for k6, SIGTERM by default).
    """
    process: subprocess.Popen[Any] = subprocess.Popen(list(command), **popen)
    with _lock:
        _live[process.pid] = (process, stop_signal)
    return process


def live() -> list[subprocess.Popen[Any]]:
    """The registered children that have not been ended or waited for through this module."""
    with _lock:
        return [process for process, _ in _live.values()]


def _forget(process: subprocess.Popen[Any]) -> None:
    with _lock:
        _live.pop(process.pid, None)


def end(process: subprocess.Popen[Any], *, grace: float = GRACE_S) -> int:
    """Stop ``process`` if it still runs (its stop signal, then SIGKILL); its exit status."""
    with _lock:
        stop_signal = _live.get(process.pid, (process, signal.SIGTERM))[1]
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(stop_signal)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    _forget(process)
    return process.returncode


def end_all(*, grace: float = GRACE_S) -> None:
    """Stop every registered child: all are signalled first, then waited for together."""
    with _lock:
        children = list(_live.values())
    for process, stop_signal in children:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(stop_signal)
    deadline = time.monotonic() + grace
    for process, _ in children:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        _forget(process)


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`KeyboardInterrupt` like Ctrl-C does.

    Signal handlers belong to the main thread; elsewhere the block changes nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def ended_on_exit(*, grace: float = GRACE_S) -> Iterator[None]:
    """Within the block SIGTERM interrupts like Ctrl-C; leaving it ends every child."""
    with sigterm_interrupts():
        try:
            yield
        finally:
            end_all(grace=grace)


atexit.register(end_all)
