"""The SQLite side of the keyword index: the schema, one collection's connection, and the
queries :mod:`somaagent.memory.keyword` runs (private to it)."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from somaagent.errors import VectorStoreError
from somaagent.memory.filters import And, Condition, Filter, Scalar, matches

BACKEND = "keyword"

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    document_id TEXT,
    document TEXT NOT NULL,
    metadata TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_document_id ON records (document_id);
CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(
    text, tokenize = 'porter unicode61 remove_diacritics 2'
);
"""


class SQLiteCollection:
    """One collection's SQLite file and its connection (shared by threads, under a lock)."""

    def __init__(self, path: Path | None) -> None:
        target = ":memory:" if path is None else str(path)
        self.lock = threading.Lock()
        self.connection = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        self.connection.execute("PRAGMA busy_timeout = 5000")
        if path is not None:
            self.connection.execute("PRAGMA journal_mode = WAL")
            self.connection.execute("PRAGMA synchronous = NORMAL")
        self.connection.executescript(SCHEMA)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            self.connection.execute("BEGIN IMMEDIATE")
            try:
                yield self.connection
            except BaseException:
                self.connection.execute("ROLLBACK")
                raise
            self.connection.execute("COMMIT")

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            yield self.connection

    def close(self) -> None:
        with self.lock:
            self.connection.close()


def dump(metadata: Mapping[str, Scalar]) -> str:
    return json.dumps(dict(metadata), ensure_ascii=False, separators=(",", ":"))


def document_id_of(metadata: Mapping[str, Scalar]) -> str | None:
    value = metadata.get("document_id")
    return value if isinstance(value, str) else None


def indexed_text(db: sqlite3.Connection, rowid: int) -> str | None:
    row = db.execute("SELECT text FROM fts WHERE rowid = ?", (rowid,)).fetchone()
    return None if row is None else str(row[0])


def _candidates(db: sqlite3.Connection, node: Filter | None) -> sqlite3.Cursor:
    """Rows that may match: narrowed by the indexed ``document_id`` column when the filter
    requires it (``eq`` or ``in``, alone or in an ``and``), else every row."""
    conditions = [node] if isinstance(node, Condition) else []
    if isinstance(node, And):
        conditions = [c for c in node.clauses if isinstance(c, Condition)]
    for condition in conditions:
        if condition.field == "document_id" and condition.op in ("eq", "in"):
            values = condition.value if isinstance(condition.value, tuple) else (condition.value,)
            strings = [v for v in values if isinstance(v, str)]
            marks = ",".join("?" * len(strings)) or "NULL"
            return db.execute(
                f"SELECT id, metadata FROM records WHERE document_id IN ({marks})", strings
            )
    return db.execute("SELECT id, metadata FROM records")


def matching_ids(db: sqlite3.Connection, node: Filter | None) -> Iterable[str]:
    # The reference matcher has the last word, so the fast path can never change a result.
    for record_id, metadata in _candidates(db, node).fetchall():
        if matches(node, json.loads(metadata)):
            yield record_id


def delete_ids(db: sqlite3.Connection, ids: Sequence[str]) -> int:
    deleted = 0
    for record_id in ids:
        row = db.execute("SELECT rowid FROM records WHERE id = ?", (record_id,)).fetchone()
        if row is None:
            continue
        db.execute("DELETE FROM fts WHERE rowid = ?", (row[0],))
        db.execute("DELETE FROM records WHERE rowid = ?", (row[0],))
        deleted += 1
    return deleted


@contextmanager
def mapped(collection: str) -> Iterator[None]:
    """SQLite failures as the typed 503 that names the collection."""
    try:
        yield
    except sqlite3.Error as exc:
        raise VectorStoreError(
            f"the keyword index of collection {collection!r} failed: {exc}", backend=BACKEND
        ) from exc
