"""Files uploaded for later ``document_ingest`` runs, stored in the gateway's database.

An upload is stored in one transaction before its id is answered, so it survives a crash and
is seen by every gateway process on the same database. A run names uploads in
``input.uploads``; they are checked (the tenant's own, existing) before the run is accepted, a
checkpointed step lists their files, and each batch reads only its own files when it runs.

Retention: with a time to live (``SOMA_WORKFLOW_UPLOAD_TTL_HOURS``), an upload older than it
is refused by new runs (a 422 ``expired`` naming ``input.uploads.N``) and removed by the sweep
of :mod:`.retention` a grace period later, unless a queued or running run names it; it can
also be deleted at once (``DELETE``). A document indexed from an upload has the id
``<upload id>/<position>/<name>``: two files of the same name (in one upload or two) are two
documents, and indexing the same upload again replaces its documents (unchanged ones are not
embedded again).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath, PureWindowsPath

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from somaagent.db import utcnow
from somaagent.db.ids import random_id
from somaagent.errors import ConflictError, ValidationError
from somaagent.types.memory import DocumentIn
from somaagent.types.workflows import UploadedFile, WorkflowUpload
from somaagent.workflows.tables import WorkflowUploadFile

MAX_FILES = 1_000
"""Files in one upload (their bytes are bounded by the gateway's request size limit)."""
UploadRef = list[str | int]
"""A listed file of an upload: ``[upload id, position]`` (JSON-like, for checkpoints)."""
_MARKDOWN = (".md", ".markdown", ".mdx")


def _error(loc: Sequence[str | int], message: str, kind: str) -> ValidationError:
    return ValidationError(message, errors=[{"loc": list(loc), "msg": message, "type": kind}])


def file_name(raw: str | None, position: int) -> str:
    """The file's own name, folders dropped (either slash), at most 255 characters."""
    name = PureWindowsPath(PurePosixPath(raw or "").name).name
    name = "".join(c for c in name if c.isprintable()).strip()
    return (name or f"file-{position}")[:255]


def upload_id_for(tenant: str, key: str | None) -> str:
    """A fresh id, or one derived from the request's ``Idempotency-Key`` (a retried upload
    then answers the upload already stored)."""
    if not key:
        return random_id("up", 20)
    return "up_" + hashlib.sha256(f"{tenant}\n{key}".encode()).hexdigest()[:20]


def document_id(upload_id: str, position: int, name: str) -> str:
    """The memory document id of an uploaded file: unique per file (the upload and the
    file's position), stable across runs over the same upload, readable (its name)."""
    return f"{upload_id}/{position}/{name}"[:256]


def _decode(name: str, data: bytes) -> str | None:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    return None if "\x00" in text else text


class UploadStore:
    """The tenant-scoped store of uploads on the gateway's sessions."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, ttl_hours: float = 0.0
    ) -> None:
        self._sessions = sessions
        self.ttl: timedelta | None = timedelta(hours=ttl_hours) if ttl_hours > 0 else None
        """How long an upload is kept; ``None``: until it is deleted."""

    def expires_at(self, created_at: datetime) -> datetime | None:
        return None if self.ttl is None else created_at + self.ttl

    def _expired(self, created_at: datetime, now: datetime | None = None) -> bool:
        expires = self.expires_at(created_at)
        return expires is not None and expires <= (now or utcnow())

    async def save(
        self, tenant: str, files: Sequence[tuple[str | None, bytes]], *, key: str | None = None
    ) -> WorkflowUpload:
        """Store ``files`` (name, bytes) as one upload, committed before this returns.

        Raises:
            ValidationError: no files, too many, or one that is not UTF-8 text (a 422 naming
                ``files.N``).
        """
        if not files:
            raise _error(["body", "files"], "upload at least one file", "missing")
        if len(files) > MAX_FILES:
            raise _error(["body", "files"], f"at most {MAX_FILES} files per upload", "too_many")
        upload_id = upload_id_for(tenant, key)
        existing = await self.get(tenant, upload_id)
        if existing is not None:
            if self._expired(existing.created_at):
                raise ConflictError(
                    f"the upload stored under this Idempotency-Key ({upload_id}) has expired; "
                    "upload again with a new key"
                )
            return existing
        rows = []
        for position, (raw, data) in enumerate(files):
            name = file_name(raw, position)
            if _decode(name, data) is None:
                raise _error(
                    ["body", "files", position], f"{name!r} is not UTF-8 text", "binary_file"
                )
            digest = hashlib.sha256(data).hexdigest()
            rows.append(
                WorkflowUploadFile(
                    tenant_id=tenant,
                    upload_id=upload_id,
                    position=position,
                    name=name,
                    size=len(data),
                    sha256=digest,
                    content=data,
                )
            )
        try:
            async with self._sessions.begin() as session:
                session.add_all(rows)
        except IntegrityError:  # the same key, stored meanwhile by a concurrent retry
            stored = await self.get(tenant, upload_id)
            if stored is None:
                raise
            return stored
        stored = await self.get(tenant, upload_id)
        assert stored is not None
        return stored

    async def get(self, tenant: str, upload_id: str) -> WorkflowUpload | None:
        """The tenant's upload, or ``None`` (another tenant's is ``None`` too)."""
        query = (
            select(
                WorkflowUploadFile.name,
                WorkflowUploadFile.size,
                WorkflowUploadFile.sha256,
                WorkflowUploadFile.created_at,
            )
            .where(
                WorkflowUploadFile.tenant_id == tenant, WorkflowUploadFile.upload_id == upload_id
            )
            .order_by(WorkflowUploadFile.position)
        )
        async with self._sessions() as session:
            rows = (await session.execute(query)).all()
        if not rows:
            return None
        return WorkflowUpload(
            id=upload_id,
            files=[UploadedFile(name=r.name, size=r.size, sha256=r.sha256) for r in rows],
            bytes=sum(r.size for r in rows),
            created_at=rows[0].created_at,
            expires_at=self.expires_at(rows[0].created_at),
        )

    async def delete(self, tenant: str, upload_id: str) -> bool:
        """Remove the tenant's upload (its files); whether there was one. Whether a run still
        needs it is :mod:`.retention`'s to check first."""
        query = delete(WorkflowUploadFile).where(
            WorkflowUploadFile.tenant_id == tenant, WorkflowUploadFile.upload_id == upload_id
        )
        async with self._sessions.begin() as session:
            result = await session.execute(query)
        return bool(getattr(result, "rowcount", 0))

    async def older_than(self, cutoff: datetime, limit: int = 1000) -> list[tuple[str, str]]:
        """``(tenant, upload id)`` of uploads created before ``cutoff``, oldest first."""
        cutoff = cutoff.astimezone(UTC)  # SQLite compares the stored UTC text
        query = (
            select(WorkflowUploadFile.tenant_id, WorkflowUploadFile.upload_id)
            .where(WorkflowUploadFile.position == 0, WorkflowUploadFile.created_at < cutoff)
            .order_by(WorkflowUploadFile.created_at)
            .limit(limit)
        )
        async with self._sessions() as session:
            return [(row[0], row[1]) for row in await session.execute(query)]

    async def check(self, tenant: str, upload_ids: Sequence[str]) -> int:
        """How many files the uploads hold (each upload counted once); refuses the first
        upload id that is not one of the tenant's, or has expired (a 422 naming
        ``input.uploads.N``)."""
        if not upload_ids:
            return 0
        query = (
            select(
                WorkflowUploadFile.upload_id,
                func.count(),
                func.min(WorkflowUploadFile.created_at),
            )
            .where(
                WorkflowUploadFile.tenant_id == tenant,
                WorkflowUploadFile.upload_id.in_(set(upload_ids)),
            )
            .group_by(WorkflowUploadFile.upload_id)
        )
        async with self._sessions() as session:
            found = {row[0]: (int(row[1]), row[2]) for row in await session.execute(query)}
        for index, upload_id in enumerate(upload_ids):
            if upload_id not in found:
                raise _error(
                    ["body", "input", "uploads", index],
                    f"no upload {upload_id!r} for this tenant",
                    "not_found",
                )
            if self._expired(_aware(found[upload_id][1])):
                raise _error(
                    ["body", "input", "uploads", index],
                    f"upload {upload_id!r} has expired (uploads are kept "
                    f"{self._hours()} hours: SOMA_WORKFLOW_UPLOAD_TTL_HOURS); upload the files "
                    "again",
                    "expired",
                )
        return sum(count for count, _ in found.values())

    def _hours(self) -> str:
        assert self.ttl is not None
        return f"{self.ttl.total_seconds() / 3600:g}"

    async def list_files(self, tenant: str, upload_ids: Sequence[str]) -> list[UploadRef]:
        """The uploads' files as ``[upload id, position]``, in the order named, each once."""
        refs: list[UploadRef] = []
        async with self._sessions() as session:
            for upload_id in dict.fromkeys(upload_ids):
                query = (
                    select(WorkflowUploadFile.position)
                    .where(
                        WorkflowUploadFile.tenant_id == tenant,
                        WorkflowUploadFile.upload_id == upload_id,
                    )
                    .order_by(WorkflowUploadFile.position)
                )
                refs.extend([upload_id, p] for p in (await session.execute(query)).scalars())
        return refs

    async def count(self, tenant: str) -> int:
        """How many files the tenant has uploaded (for tests and metrics)."""
        query = select(func.count()).where(WorkflowUploadFile.tenant_id == tenant)
        async with self._sessions() as session:
            return int((await session.execute(query)).scalar_one())

    async def read(self, tenant: str, refs: Sequence[UploadRef]) -> list[DocumentIn]:
        """The documents in these listed files; each one's id is :func:`document_id` (so a
        later run over the same upload replaces them instead of adding copies, and two files
        of the same name stay two documents) and its source the file's name.

        Raises:
            ValidationError: a file is gone (its upload was removed after the run started).
        """
        documents = []
        async with self._sessions() as session:
            for upload_id, position in refs:
                row = await session.get(WorkflowUploadFile, (tenant, upload_id, position))
                if row is None:
                    raise _error(
                        ["body", "input", "uploads"],
                        f"upload {upload_id!r} has no file {position} (was the upload "
                        "deleted or did it expire after the run started?)",
                        "not_found",
                    )
                text = _decode(row.name, row.content) or ""
                fmt = "markdown" if row.name.lower().endswith(_MARKDOWN) else "text"
                documents.append(
                    DocumentIn(
                        id=document_id(row.upload_id, row.position, row.name),
                        text=text,
                        source=row.name,
                        format=fmt,
                    )
                )
        return documents


def _aware(value: datetime) -> datetime:
    """An aggregate's datetime (SQLite may give it back naive, in UTC) as an aware one."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
