"""Ids: sortable and unique (``new_id``), random only (``random_id``), unique per process on the
hot path (``CountingIds``)."""

from __future__ import annotations

import re
import subprocess
import sys

from somaagent.db.ids import CountingIds, new_id, random_id


def test_new_ids_sort_in_creation_order_and_never_repeat() -> None:
    ids = [new_id("msg") for _ in range(20_000)]  # many within one millisecond
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("msg_") and len(i) == 4 + 24 for i in ids)


def test_counting_ids_are_unique_and_wrap_within_their_width() -> None:
    ids = CountingIds(16)
    seen = [ids.next() for _ in range(2**16)]
    assert len(set(seen)) == 2**16  # a full cycle before any repeats
    assert all(0 <= value < 2**16 for value in seen)


_FORK_CHECK = """
import os
from somaagent.db.ids import CountingIds
ids = CountingIds(64)
expected = ids.next() + 1  # what the parent gives next
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(write, str(ids.next()).encode())
    os._exit(0)
os.close(write)
child = int(os.read(read, 64).decode())
os.waitpid(pid, 0)
print(child != expected, ids.next() == expected)
"""


def test_a_forked_child_counts_from_its_own_start() -> None:
    # In a fresh single-threaded interpreter: forking this (threaded) test process would warn.
    done = subprocess.run(
        [sys.executable, "-c", _FORK_CHECK], capture_output=True, text=True, check=True
    )
    # The child restarted at a fresh random point (1 in 2**64 to fail); the parent went on.
    assert done.stdout.split() == ["True", "True"]


def test_random_ids_carry_no_time_and_do_not_repeat() -> None:
    ids = [random_id("up") for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"up_[0-9a-f]{20}", i) for i in ids)
    # made in order, yet not sorted: nothing in them grows with time
    assert ids != sorted(ids)
    assert re.fullmatch(r"k_[0-9a-f]{8}", random_id("k", 8))
