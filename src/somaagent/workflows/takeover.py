"""Taking over the runs of a gateway process that died, on PostgreSQL.

DBOS 3.4 resumes, at launch, only the PENDING runs of its own executor id and application
version; without DBOS Conductor nothing notices that *another* process died. So each gateway
process holds, for its whole life, a PostgreSQL session advisory lock named after its executor
id, on a connection of its own. PostgreSQL drops the lock the moment that connection closes:
when the process exits, is killed (``kill -9``) or its machine's TCP keepalive gives up.

Every few seconds each process lists the PENDING runs of its own application version held by
other executors and tries each executor's lock. Getting it proves the executor is gone; the
process then asks DBOS to recover that executor's runs (``DBOS._recover_pending_workflows``),
which puts them back on their queue with one atomic ``PENDING -> ENQUEUED`` update per run, so
two survivors recovering at once still start each run once. The lock is released right after.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import sqlalchemy as sa

LOCK_NAMESPACE = "somaagent.workflows.executor:"


def lock_key(executor_id: str) -> int:
    """The advisory lock id (a signed 64-bit integer) of an executor."""
    digest = hashlib.blake2b((LOCK_NAMESPACE + executor_id).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def conninfo(database_url: str) -> str:
    """A libpq URL for psycopg from a SQLAlchemy URL (any driver)."""
    url = sa.make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class ExecutorLiveness:
    """This process's liveness lock, and probes of other executors' locks (blocking calls)."""

    def __init__(self, database_url: str, executor_id: str) -> None:
        self.database_url = database_url
        self.executor_id = executor_id
        self._conn: Any = None
        self._lock = threading.Lock()

    def hold(self) -> None:
        """Connect and take this executor's lock (held until :meth:`close`)."""
        import psycopg

        self._conn = psycopg.connect(conninfo(self.database_url), autocommit=True)
        self._conn.execute("SELECT pg_advisory_lock(%s)", (lock_key(self.executor_id),))

    def try_claim(self, executor_id: str) -> bool:
        """Whether ``executor_id`` is gone (its lock is free); if so, this process holds it."""
        with self._lock:
            row = self._conn.execute(
                "SELECT pg_try_advisory_lock(%s)", (lock_key(executor_id),)
            ).fetchone()
            return bool(row and row[0])

    def release(self, executor_id: str) -> None:
        with self._lock:
            self._conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key(executor_id),))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
