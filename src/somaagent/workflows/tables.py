"""The workflows package's table: files uploaded for later ``document_ingest`` runs.

An upload is one or more files stored in one transaction before the upload's id is answered,
so a run that names it reads them after any crash or restart, on any gateway process sharing
the database. Every query filters on ``tenant_id``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from somaagent.db import Base, UTCDateTime, utcnow

__all__ = ["WorkflowUploadFile"]


class WorkflowUploadFile(Base):
    """One file of a tenant's upload, at its position in the upload."""

    __tablename__ = "workflow_upload_files"

    tenant_id: Mapped[str] = mapped_column(String(64), ForeignKey("tenants.id"), primary_key=True)
    upload_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
