"""Ids: the one place SomaAgent makes them.

:func:`new_id` makes the ids of stored rows (and anything else that needs a sortable,
unguessable id): ``<prefix>_`` + 12 hex digits of millisecond time, 4 of a counter (so ids made
in the same millisecond by one process still sort in creation order), and 8 random.
"""

from __future__ import annotations

import secrets
import time

__all__ = ["new_id"]

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
