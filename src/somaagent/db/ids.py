"""Ids: the one place SomaAgent makes them.

:func:`new_id` makes the ids of stored rows (and anything else that needs a sortable,
unguessable id): ``<prefix>_`` + 12 hex digits of millisecond time, 4 of a counter (so ids made
in the same millisecond by one process still sort in creation order), and 8 random.
:func:`random_id` makes ids that must not reveal when they were made (workflow uploads, whose
wire format fixes 20 hex digits).
:class:`CountingIds` makes ids that are only unique, for the hot path (request ids, chat
completion ids).
"""

from __future__ import annotations

import itertools
import os
import secrets
import time
import weakref

__all__ = ["CountingIds", "new_id", "random_id"]

_last = [0, 0]  # the last millisecond an id was made in, and how many were made in it


def new_id(prefix: str) -> str:
    """A sortable, unguessable id: ``<prefix>_`` + 12 hex digits of ms time, 4 of a counter
    and 8 random (24 hex digits after the prefix)."""
    now = max(int(time.time() * 1000), _last[0])
    _last[1] = _last[1] + 1 if now == _last[0] else 0
    if _last[1] > 0xFFFF:
        now, _last[1] = now + 1, 0
    _last[0] = now
    return f"{prefix}_{now:012x}{_last[1]:04x}{secrets.token_hex(4)}"


def random_id(prefix: str, hex_digits: int = 20) -> str:
    """An unguessable id with no time in it: ``<prefix>_`` + ``hex_digits`` random hex digits
    (an even number)."""
    return f"{prefix}_{secrets.token_hex(hex_digits // 2)}"


class CountingIds:
    """Ids that must be unique but need not be secret (request and completion ids on the hot
    path): a counter from a random start per process, since fresh randomness per id cost more
    than the rest of the gateway's middleware. A forked worker starts again from its own random
    point, so workers forked from one parent differ.

    Args:
        bits: the ids' width; :meth:`next` wraps around within it.
    """

    def __init__(self, bits: int) -> None:
        self._mask = (1 << bits) - 1
        self._bits = bits
        self.restart()
        _counting.add(self)

    def restart(self) -> None:
        """Count again from a fresh random start (done in a forked child)."""
        self._start = secrets.randbits(self._bits)
        self._count = itertools.count()

    def next(self) -> int:
        """The next id, as an int of at most ``bits`` bits."""
        return (self._start + next(self._count)) & self._mask


_counting: weakref.WeakSet[CountingIds] = weakref.WeakSet()


def _restart_all() -> None:
    for ids in list(_counting):
        ids.restart()


os.register_at_fork(after_in_child=_restart_all)
