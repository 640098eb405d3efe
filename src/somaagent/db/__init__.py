"""The neutral database layer: engine and sessions, the declarative base and shared column
types, ids, pagination cursors and the one Alembic migration history (see ``README.md``).

It knows no domain: each domain package keeps its own tables on :class:`Base`.
"""

from __future__ import annotations

from somaagent.db.base import JSON, Base, JSONDict, JSONList, Tenant, UTCDateTime, utcnow
from somaagent.db.engine import make_engine, make_sessionmaker, migrate
from somaagent.db.ids import new_id
from somaagent.db.pagination import decode_cursor, encode_cursor

__all__ = [
    "JSON",
    "Base",
    "JSONDict",
    "JSONList",
    "Tenant",
    "UTCDateTime",
    "decode_cursor",
    "encode_cursor",
    "make_engine",
    "make_sessionmaker",
    "migrate",
    "new_id",
    "utcnow",
]
