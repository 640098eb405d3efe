"""The capsule tables: immutable versions, each tenant's installs, and executions.

Every row carries ``tenant_id`` and every query filters on it. A version row is never updated:
its content hash and pinned tool hashes are what the tenant installed.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from somaagent.db import JSON, Base, JSONDict, UTCDateTime, utcnow

__all__ = ["CapsuleExecutionRow", "CapsuleInstallRow", "CapsuleVersionRow"]


class CapsuleVersionRow(Base):
    """One stored version of a tenant's capsule: manifest (hashes pinned) and archive."""

    __tablename__ = "capsule_versions"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name", "version", name="uq_capsule_versions_version"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    manifest: Mapped[JSONDict] = mapped_column(JSON)
    sha256: Mapped[str] = mapped_column(String(64))
    archive: Mapped[bytes] = mapped_column(LargeBinary)
    source: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CapsuleInstallRow(Base):
    """Which version of a capsule a tenant has installed (uninstall deletes this row only)."""

    __tablename__ = "capsule_installs"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "name", "version"],
            ["capsule_versions.tenant_id", "capsule_versions.name", "capsule_versions.version"],
            name="fk_capsule_installs_version",
        ),
    )

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[str] = mapped_column(String(64))
    installed_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    installed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CapsuleExecutionRow(Base):
    """One tool call: who called what, for how long, and how it ended."""

    __tablename__ = "capsule_executions"
    __table_args__ = (Index("ix_capsule_executions_tenant_id_id", "tenant_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    key_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    capsule: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64))
    tool: Mapped[str] = mapped_column(String(64))
    is_error: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    duration_ms: Mapped[float] = mapped_column(Float)
    sandbox_tier: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
