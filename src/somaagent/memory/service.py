"""The memory service: per-tenant collections, the documents registry, search, retrieval
and conversation memory.

Collections are named by their tenant and name; in the vector store and the keyword index they
live under ``store_name``, a hash of both, so tenants never share one and another tenant's
collection is simply not found (404). The registry (``memory_documents``) keeps each document's
source, content hash and chunk count: re-indexing an unchanged document is skipped, a changed
one replaces its chunks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from somaagent import types
from somaagent.db import decode_cursor, encode_cursor, new_id, utcnow
from somaagent.errors import (
    ConflictError,
    NotFoundError,
    PayloadTooLargeError,
    SomaAgentError,
)
from somaagent.memory.collections import (
    check_model,
    collection_public,
    document_id_for,
    document_info,
    get_row,
    index_error,
    record_report,
    split_unchanged,
    store_name,
)
from somaagent.memory.context import hit_public
from somaagent.memory.conversations import ConversationMemory
from somaagent.memory.documents import Document, IndexReport
from somaagent.memory.embedder_pool import EmbedderPool
from somaagent.memory.hybrid import SearchOptions
from somaagent.memory.rag import RAGPipeline
from somaagent.memory.tables import MemoryCollection, MemoryDocument
from somaagent.types.memory import (
    Collection,
    CollectionCreate,
    DocumentIn,
    DocumentInfo,
    IndexResult,
    MessageHit,
    RAGContext,
    RetrieveRequest,
    SearchRequest,
    SearchResults,
)

__all__ = ["MemoryService", "store_name"]

logger = logging.getLogger(__name__)
TokenCounter = Callable[[str], int]


def _options(body: SearchRequest | RetrieveRequest) -> SearchOptions:
    return SearchOptions(mode=body.mode, fusion=body.fusion, alpha=body.alpha, rrf_k=body.rrf_k)


class MemoryService:
    """Memory for one server (the gateway wires it; grounded chat is in ``somaagent.chat``).

    Args:
        sessions: the session factory (collections and documents registry).
        pipeline: the RAG pipeline (embedder, vector store, keyword index).
        embedders: the models ``/v1/embeddings`` serves; only the pipeline's own when ``None``.
        max_document_chars: the longest document accepted.
        index_messages: whether :meth:`message_stored` indexes messages.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        pipeline: RAGPipeline,
        *,
        embedders: EmbedderPool | None = None,
        max_document_chars: int = 2_000_000,
        index_messages: bool = True,
    ) -> None:
        self.sessions = sessions
        self.pipeline = pipeline
        self.embedders = embedders or EmbedderPool(
            None, default=pipeline.embedder, default_spec="local"
        )
        self.max_document_chars = max_document_chars
        self.index_messages = index_messages
        self.conversations = ConversationMemory(pipeline)
        self._background: set[asyncio.Task[None]] = set()

    # -- collections -------------------------------------------------------------------------

    async def create_collection(self, tenant: str, body: CollectionCreate) -> Collection:
        """Create a collection (409 if the tenant has one by that name)."""
        embedder = self.pipeline.embedder
        now = utcnow()
        row = MemoryCollection(
            id=new_id("mcol"),
            tenant_id=tenant,
            name=body.name,
            store_name=store_name(tenant, body.name),
            description=body.description,
            metadata_=dict(body.metadata),
            embedding_model=embedder.name,
            dimension=embedder.dimension,
            metric="cosine",
            created_at=now,
            updated_at=now,
        )
        async with self.sessions() as session:
            session.add(row)
            try:
                await session.flush()
            except IntegrityError as exc:
                raise ConflictError(f"collection {body.name!r} already exists") from exc
            # A store left over from a half-finished delete is emptied, never adopted.
            await self.pipeline.delete_collection(row.store_name)
            await self.pipeline.create_collection(row.store_name, metadata={"tenant": tenant})
            await session.commit()
            return await collection_public(session, row)

    async def get_collection(self, tenant: str, name: str) -> Collection:
        """One collection with its document and chunk counts."""
        async with self.sessions() as session:
            return await collection_public(session, await get_row(session, tenant, name))

    async def list_collections(
        self, tenant: str, *, limit: int = 20, cursor: str | None = None
    ) -> types.Page[Collection]:
        """One page of the tenant's collections, by name."""
        query = select(MemoryCollection).where(MemoryCollection.tenant_id == tenant)
        if cursor is not None:
            query = query.where(MemoryCollection.name > decode_cursor(cursor, str))
        query = query.order_by(MemoryCollection.name).limit(limit + 1)
        async with self.sessions() as session:
            rows = list((await session.scalars(query)).all())
            has_more = len(rows) > limit
            data = [await collection_public(session, r) for r in rows[:limit]]
        return types.Page[Collection](
            data=data,
            has_more=has_more,
            next_cursor=encode_cursor(data[-1].name) if has_more else None,
        )

    async def delete_collection(self, tenant: str, name: str) -> None:
        """Delete a collection, its documents and their vectors."""
        async with self.sessions() as session:
            row = await get_row(session, tenant, name)
            await self.pipeline.delete_collection(row.store_name)
            await session.execute(
                delete(MemoryDocument).where(MemoryDocument.collection_id == row.id)
            )
            await session.delete(row)
            await session.commit()

    async def repair(self) -> list[str]:
        """Drop chunks that no listed document owns; the names of the collections repaired.

        The stores are written before a batch's documents are listed, so an indexing run
        killed mid-way (``kill -9``, a crash) leaves chunks in the keyword index and the vector
        store that the collection does not list: search would serve them, yet they could not
        be deleted. Called at start: a collection whose stores hold more chunks than its
        listed documents have is cleaned of every chunk outside them.
        """
        repaired: list[str] = []
        async with self.sessions() as session:
            rows = list((await session.scalars(select(MemoryCollection))).all())
            totals = await session.execute(
                select(MemoryDocument.collection_id, func.sum(MemoryDocument.chunk_count)).group_by(
                    MemoryDocument.collection_id
                )
            )
            listed_chunks = {collection_id: total for collection_id, total in totals.all()}
        for row in rows:
            expected = int(listed_chunks.get(row.id) or 0)
            try:
                held = max(
                    await self.pipeline.store.count(row.store_name),
                    await asyncio.to_thread(self.pipeline.keyword.count, row.store_name),
                )
            except SomaAgentError as exc:
                logger.warning("cannot check collection %s for lost chunks: %s", row.name, exc)
                continue
            if held <= expected:
                continue
            async with self.sessions() as session:
                ids = list(
                    await session.scalars(
                        select(MemoryDocument.document_id).where(
                            MemoryDocument.collection_id == row.id
                        )
                    )
                )
            where: dict[str, object] = (
                {"document_id": {"nin": ids}} if ids else {"chunk_index": {"gte": 0}}
            )
            await self.pipeline.store.delete(row.store_name, where=where)
            await asyncio.to_thread(self.pipeline.keyword.delete, row.store_name, where=where)
            logger.warning(
                "collection %s held %d chunks its %d listed documents do not own (an "
                "interrupted indexing run): removed",
                row.name,
                held - expected,
                len(ids),
            )
            repaired.append(row.name)
        return repaired

    # -- documents ---------------------------------------------------------------------------

    async def index(
        self,
        tenant: str,
        name: str,
        documents: Sequence[DocumentIn],
        *,
        force: bool = False,
        batch_size: int = 32,
    ) -> IndexResult:
        """Index documents, skipping unchanged ones unless ``force``.

        Raises:
            ValidationError: an invalid document (nothing is written).
            PayloadTooLargeError: a document over the size limit.
            APIError: a back-end failed; ``errors`` lists each document not stored, and the
                message names the stored ones.
        """
        for index, document in enumerate(documents):
            if len(document.text) > self.max_document_chars:
                raise PayloadTooLargeError(
                    f"document {document.id or document.source or index!r} is "
                    f"{len(document.text):,} characters; the limit is {self.max_document_chars:,}",
                    errors=[
                        {
                            "loc": ["documents", index, "text"],
                            "msg": "too large",
                            "type": "too_large",
                        }
                    ],
                )
        docs = [
            Document(
                id=document_id_for(d),
                text=d.text,
                source=d.source,
                metadata=dict(d.metadata),
                format=d.format,
            )
            for d in documents
        ]
        async with self.sessions() as session:
            row = await get_row(session, tenant, name)
            check_model(row, self.pipeline.embedder)
            known = {
                r.document_id: r
                for r in await session.scalars(
                    select(MemoryDocument).where(
                        MemoryDocument.collection_id == row.id,
                        MemoryDocument.document_id.in_([d.id for d in docs]),
                    )
                )
            }
        unchanged, todo = split_unchanged(docs, known, force=force)
        report = IndexReport()
        if todo:
            report = await self.pipeline.index_documents(
                row.store_name, todo, batch_size=batch_size
            )
        infos = await record_report(self.sessions, row, todo, report)
        result = IndexResult(
            indexed=[infos[d.id] for d in report.indexed],
            unchanged=[document_info(known[d.id]) for d in unchanged],
            chunk_count=report.chunk_count,
        )
        if report.error is not None:
            raise index_error(report, result)
        return result

    async def list_documents(
        self, tenant: str, name: str, *, limit: int = 50, cursor: str | None = None
    ) -> types.Page[DocumentInfo]:
        """One page of a collection's documents, by id."""
        async with self.sessions() as session:
            row = await get_row(session, tenant, name)
            query = select(MemoryDocument).where(MemoryDocument.collection_id == row.id)
            if cursor is not None:
                query = query.where(MemoryDocument.document_id > decode_cursor(cursor, str))
            query = query.order_by(MemoryDocument.document_id).limit(limit + 1)
            rows = list((await session.scalars(query)).all())
        has_more = len(rows) > limit
        data = [document_info(r) for r in rows[:limit]]
        return types.Page[DocumentInfo](
            data=data,
            has_more=has_more,
            next_cursor=encode_cursor(data[-1].id) if has_more else None,
        )

    async def delete_document(self, tenant: str, name: str, document_id: str) -> None:
        """Delete one document and its chunks (404 if the collection does not have it)."""
        async with self.sessions() as session:
            row = await get_row(session, tenant, name)
            document = await session.get(MemoryDocument, (row.id, document_id))
            if document is None:
                raise NotFoundError(f"document {document_id!r} not found in collection {name!r}")
            await self.pipeline.delete_document(row.store_name, document_id)
            await session.delete(document)
            await session.commit()

    # -- search and retrieval ----------------------------------------------------------------

    async def _store_name(self, tenant: str, name: str) -> str:
        async with self.sessions() as session:
            row = await get_row(session, tenant, name)
        check_model(row, self.pipeline.embedder)
        return row.store_name

    async def search(self, tenant: str, name: str, body: SearchRequest) -> SearchResults:
        """Search one collection."""
        collection = await self._store_name(tenant, name)
        hits = await self.pipeline.search(
            collection, body.query, k=body.k, where=body.filter, options=_options(body)
        )
        return SearchResults(
            data=[hit_public(h) for h in hits],
            query=body.query,
            mode=body.mode,
            fusion=body.fusion if body.mode == "hybrid" else None,
        )

    async def retrieve(
        self,
        tenant: str,
        name: str,
        body: RetrieveRequest,
        *,
        count_tokens: TokenCounter | None = None,
    ) -> RAGContext:
        """Context for a prompt from one collection, within ``body.token_budget`` tokens."""
        collection = await self._store_name(tenant, name)
        context = await self.pipeline.retrieve_context(
            body.query,
            collection,
            body.k,
            body.filter,
            body.token_budget,
            options=_options(body),
            count_tokens=count_tokens,
        )
        return context.model_copy(update={"collection": name})

    # -- conversation memory -----------------------------------------------------------------

    def message_stored(self, tenant: str, message: types.Message) -> None:
        """Hook: call after a message is stored; indexes it in the background.

        Never raises and never delays the chat turn: a failure is logged. Needs a running
        event loop (the gateway's).
        """
        if not self.index_messages or not message.content.strip():
            return
        task = asyncio.get_running_loop().create_task(self._index_message(tenant, message))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _index_message(self, tenant: str, message: types.Message) -> None:
        try:
            await self.conversations.index_message(
                tenant,
                message_id=message.id,
                conversation_id=message.conversation_id,
                role=message.role,
                content=message.content,
                created_at=message.created_at,
            )
        except SomaAgentError as exc:
            logger.warning("could not index message %s for search: %s", message.id, exc)

    async def search_conversations(
        self, tenant: str, query: str, k: int = 5, *, conversation_id: str | None = None
    ) -> list[MessageHit]:
        """The tenant's stored messages that best match ``query``."""
        return await self.conversations.search(tenant, query, k, conversation_id=conversation_id)

    async def forget_conversation(self, tenant: str, conversation_id: str) -> None:
        """Hook: call after a conversation is deleted; drops its messages from the index."""
        await self.conversations.forget_conversation(tenant, conversation_id)

    async def drain(self) -> None:
        """Wait for background indexing started by :meth:`message_stored`."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def aclose(self) -> None:
        """Finish background work and close the embedder, store and keyword index."""
        await self.drain()
        await self.embedders.aclose()
        await self.pipeline.embedder.aclose()
        await self.pipeline.store.aclose()
        self.pipeline.keyword.close()
