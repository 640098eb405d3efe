"""The declarative base every domain's tables sit on, the column types they share, and the
``tenants`` table that every row's ``tenant_id`` points at.

No domain table lives here: each domain package keeps its own in its ``tables`` module (see
:mod:`somaagent.db.migrations`), on this :class:`Base` so that one metadata holds them all.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = ["JSON", "Base", "JSONDict", "JSONList", "Tenant", "UTCDateTime", "utcnow"]

JSONDict = dict[str, Any]
"""The Python type of a JSON object column (``Mapped[JSONDict] = mapped_column(JSON)``)."""
JSONList = list[Any]
"""The Python type of a JSON array column."""


def utcnow() -> datetime:
    """Now, timezone-aware in UTC (what every timestamp column stores)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every back-end (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime")
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    """The one declarative base (and so the one ``MetaData``) of SomaAgent's tables."""


class Tenant(Base):
    """A tenant: the scope of every other row (each carries ``tenant_id``, every query
    filters on it). Here, not in a domain, because every domain's tables point at it."""

    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
