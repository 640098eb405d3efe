"""The memory registry in the database: a tenant's collections by name, and the documents
indexed in each (source, content hash, chunk count), with the rule that says which documents
an index run may skip."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from somaagent.db import utcnow
from somaagent.errors import APIError, ConflictError, NotFoundError, as_api_error
from somaagent.memory.documents import Document, IndexReport
from somaagent.memory.embeddings.base import Embedder
from somaagent.memory.naming import collection_store_name
from somaagent.memory.tables import MemoryCollection, MemoryDocument
from somaagent.types.memory import Collection, DocumentIn, DocumentInfo, IndexResult

__all__ = [
    "check_model",
    "collection_public",
    "document_id_for",
    "document_info",
    "get_row",
    "index_error",
    "record_report",
    "split_unchanged",
    "store_name",
]

store_name = collection_store_name
"""The collection's name in the vector store and keyword index (:mod:`.naming`)."""


def document_id_for(document: DocumentIn) -> str:
    """A document's id: the one given, else its source, else a hash of its text."""
    if document.id:
        return document.id
    if document.source:
        return document.source[:256]
    return "doc_" + hashlib.sha256(document.text.encode()).hexdigest()[:24]


async def get_row(session: AsyncSession, tenant: str, name: str) -> MemoryCollection:
    """The tenant's collection ``name``; 404 for an unknown one or another tenant's."""
    row = await session.scalar(
        select(MemoryCollection).where(
            MemoryCollection.tenant_id == tenant, MemoryCollection.name == name
        )
    )
    if row is None:
        raise NotFoundError(f"collection {name!r} not found")
    return row


async def collection_public(session: AsyncSession, row: MemoryCollection) -> Collection:
    """A collection row as the API shows it, with its document and chunk counts."""
    documents, chunks = (
        await session.execute(
            select(func.count(), func.coalesce(func.sum(MemoryDocument.chunk_count), 0)).where(
                MemoryDocument.collection_id == row.id
            )
        )
    ).one()
    return Collection(
        name=row.name,
        description=row.description,
        metadata=row.metadata_,
        embedding_model=row.embedding_model,
        dimension=row.dimension,
        metric=row.metric,
        document_count=int(documents),
        chunk_count=int(chunks),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def split_unchanged(
    docs: Sequence[Document], known: Mapping[str, MemoryDocument], *, force: bool
) -> tuple[list[Document], list[Document]]:
    """The index-skip rule: a document whose id the collection holds with the same content
    hash is unchanged and skipped (unless ``force``); the rest are indexed.

    Returns:
        ``(unchanged, todo)``, each in the order given.
    """
    unchanged = [
        d
        for d in docs
        if not force and d.id in known and known[d.id].content_hash == d.content_hash
    ]
    skipped = {d.id for d in unchanged}
    return unchanged, [d for d in docs if d.id not in skipped]


def check_model(row: MemoryCollection, embedder: Embedder) -> None:
    """409 when the collection's vectors come from another model than the gateway's."""
    if (row.embedding_model, row.dimension) != (embedder.name, embedder.dimension):
        raise ConflictError(
            f"collection {row.name!r} holds {row.dimension}-d vectors of "
            f"{row.embedding_model}, but this gateway embeds with {embedder.name} "
            f"({embedder.dimension}-d); set SOMA_EMBEDDING_MODEL back, or re-create it"
        )


async def record_report(
    sessions: async_sessionmaker[AsyncSession],
    collection: MemoryCollection,
    docs: Sequence[Document],
    report: IndexReport,
) -> dict[str, DocumentInfo]:
    """Bring the registry in line with what an index run stored, removed or left unknown."""
    by_id = {d.id: d for d in docs}
    now = utcnow()
    infos: dict[str, DocumentInfo] = {}
    async with sessions() as session:
        fresh = await session.get(MemoryCollection, collection.id)
        if fresh is not None and report.indexed:
            # Written first, the collection's row makes its writers take turns (a row lock on
            # PostgreSQL, SQLite's write lock) until the commit: two runs storing the same new
            # document cannot both insert it
            fresh.updated_at = now
            await session.flush()
        for stored in report.indexed:
            doc = by_id[stored.id]
            row = await session.get(MemoryDocument, (collection.id, doc.id))
            if row is None:
                row = MemoryDocument(
                    collection_id=collection.id,
                    document_id=doc.id,
                    tenant_id=collection.tenant_id,
                    created_at=now,
                )
                session.add(row)
            row.source = doc.source
            row.content_hash = stored.content_hash
            row.chunk_count = stored.chunk_count
            row.size = len(doc.text)
            row.metadata_ = dict(doc.metadata)
            row.updated_at = now
            await session.flush()
            infos[doc.id] = document_info(row)
        for failed in report.failed:
            row = await session.get(MemoryDocument, (collection.id, failed.id))
            if row is not None and failed.state == "removed":
                await session.delete(row)
            elif row is not None and failed.state == "unknown":
                row.content_hash = ""  # never "unchanged": the next index writes it again
        await session.commit()
    return infos


def document_info(row: MemoryDocument) -> DocumentInfo:
    """A registry row as the API shows it."""
    return DocumentInfo(
        id=row.document_id,
        source=row.source,
        content_hash=row.content_hash,
        chunk_count=row.chunk_count,
        size=row.size,
        metadata=row.metadata_,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def index_error(report: IndexReport, result: IndexResult) -> APIError:
    """The failure's own typed error, naming the documents stored and those not."""
    assert report.error is not None
    cause = as_api_error(report.error)
    stored = ", ".join(d.id for d in result.indexed) or "none"
    failed = ", ".join(f.id for f in report.failed)
    message = (
        f"{len(report.failed)} document(s) not stored ({failed}): {cause.message}; stored: {stored}"
    )
    cause.errors = [
        {"loc": ["documents", f.id], "msg": f.error, "type": "not_stored", "state": f.state}
        for f in report.failed
    ]
    cause.message = message
    cause.args = (message,)
    return cause
