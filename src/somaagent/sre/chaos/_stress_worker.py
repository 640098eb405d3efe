"""One stress worker process: ``python -m somaagent.sre.chaos._stress_worker cpu LOAD SECONDS``
or ``... memory BYTES SECONDS``.

It stops by itself at its deadline, when its parent goes away (so a killed ``soma`` leaves no
stress behind), or on SIGTERM/SIGINT.
"""

from __future__ import annotations

import os
import signal
import sys
import time

_PERIOD = 0.1
_PAGE = 4096


def _orphaned(parent: int) -> bool:
    return os.getppid() != parent


def _cpu(load: int, deadline: float, parent: int) -> None:
    busy = _PERIOD * load / 100
    while time.monotonic() < deadline and not _orphaned(parent):
        start = time.monotonic()
        while time.monotonic() - start < busy:
            pass
        rest = _PERIOD - (time.monotonic() - start)
        if rest > 0:
            time.sleep(rest)


def _memory(size: int, deadline: float, parent: int) -> None:
    block = bytearray(size)
    for offset in range(0, size, _PAGE):  # touch every page, so it is resident
        block[offset] = 1
    print("ready", flush=True)
    while time.monotonic() < deadline and not _orphaned(parent):
        time.sleep(0.1)
    del block


def main(argv: list[str]) -> int:
    """Run one worker; returns the exit status."""
    kind, amount, seconds = argv[0], int(argv[1]), float(argv[2])
    parent = os.getppid()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    deadline = time.monotonic() + seconds
    try:
        if kind == "cpu":
            print("ready", flush=True)
            _cpu(amount, deadline, parent)
        else:
            _memory(amount, deadline, parent)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
