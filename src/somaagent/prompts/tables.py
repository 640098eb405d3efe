"""The prompt engine's tables: immutable template versions and the labels that point at them.

Both carry ``tenant_id``; a label's ``(tenant_id, name, version)`` is a foreign key to the
version it points at, so a label can never point nowhere.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from somaagent.db.base import Base, UTCDateTime, utcnow

__all__ = ["PromptLabel", "PromptVersion"]


class PromptVersion(Base):
    """One saved version of a template; rows are never updated or deleted."""

    __tablename__ = "prompt_versions"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name", "version", name="uq_prompt_versions_version"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(20))
    body: Mapped[str] = mapped_column(Text)
    variables: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    description: Mapped[str] = mapped_column(Text, default="")
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    sha256: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class PromptLabel(Base):
    """A named pointer (``production``, ``staging``, ...) at one version of a template."""

    __tablename__ = "prompt_labels"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "name", "version"],
            ["prompt_versions.tenant_id", "prompt_versions.name", "prompt_versions.version"],
            name="fk_prompt_labels_version",
        ),
    )

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    label: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    updated_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
