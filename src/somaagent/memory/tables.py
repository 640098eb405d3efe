"""The memory tables: a tenant's collections and the registry of the documents in them.

The vectors and the keyword index live in their own stores; these rows say which collections a
tenant has (and under which store name), and which documents each holds, with the content hash
that lets an unchanged document be skipped on re-index.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from somaagent.db.base import Base, UTCDateTime, utcnow

__all__ = ["MemoryCollection", "MemoryDocument"]


class MemoryCollection(Base):
    """A tenant's collection; ``store_name`` names it in the vector store and keyword index."""

    __tablename__ = "memory_collections"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_memory_collections_name"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(64))
    store_name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    embedding_model: Mapped[str] = mapped_column(String(200))
    dimension: Mapped[int] = mapped_column(Integer)
    metric: Mapped[str] = mapped_column(String(20), default="cosine")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class MemoryDocument(Base):
    """A document indexed in a collection: its source, content hash and chunk count."""

    __tablename__ = "memory_documents"

    collection_id: Mapped[str] = mapped_column(
        ForeignKey("memory_collections.id", ondelete="CASCADE"), primary_key=True
    )
    document_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    source: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    chunk_count: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(Integer, default=0)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
