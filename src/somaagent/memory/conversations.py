"""Conversation memory: a tenant's messages, indexed as they are stored, searchable later.

Each tenant's messages live in one collection of their own, named
:func:`conversation_collection` (a hash of the tenant, so tenants never share one). A message is
a document whose id is the message id, chunked as plain text, with ``conversation_id``,
``role`` and ``created_at`` (POSIX seconds) as metadata, so a search can be limited to one
conversation, one role or a time range with the usual filters.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import anyio.to_thread

from somaagent.errors import NotFoundError
from somaagent.memory.documents import Document
from somaagent.memory.filters import Scalar
from somaagent.memory.hybrid import SearchOptions
from somaagent.memory.naming import conversation_store_name
from somaagent.memory.rag import RAGPipeline
from somaagent.types.memory import MessageHit

__all__ = ["ConversationMemory", "conversation_collection"]


conversation_collection = conversation_store_name
"""The store name of ``tenant``'s message collection (:mod:`.naming`)."""


class ConversationMemory:
    """Index and search a tenant's conversation messages through a :class:`RAGPipeline`."""

    def __init__(self, pipeline: RAGPipeline) -> None:
        self.pipeline = pipeline
        self._ready: set[str] = set()

    async def _ensure(self, collection: str) -> None:
        if collection not in self._ready:
            await self.pipeline.create_collection(
                collection, metadata={"kind": "conversations"}, exist_ok=True
            )
            self._ready.add(collection)

    async def index_message(
        self,
        tenant: str,
        *,
        message_id: str,
        conversation_id: str,
        role: str,
        content: str,
        created_at: datetime | None = None,
    ) -> None:
        """Index one stored message (again: the same id replaces it).

        Raises:
            SomaAgentError: the message could not be embedded or stored (typed).
        """
        if not content.strip():
            return
        collection = conversation_collection(tenant)
        await self._ensure(collection)
        metadata: dict[str, Scalar] = {"conversation_id": conversation_id, "role": role}
        if created_at is not None:
            metadata["created_at"] = created_at.timestamp()
        document = Document(id=message_id, text=content, metadata=metadata, format="text")
        report = await self.pipeline.index_documents(collection, [document], batch_size=1)
        if report.error is not None:
            raise report.error

    async def forget_conversation(self, tenant: str, conversation_id: str) -> int:
        """Remove a conversation's messages from the index; returns the chunks removed."""
        collection = conversation_collection(tenant)
        where = {"conversation_id": {"eq": conversation_id}}
        try:
            deleted = await self.pipeline.store.delete(collection, where=where)
        except NotFoundError:
            return 0
        keyword = self.pipeline.keyword
        if await anyio.to_thread.run_sync(keyword.has_collection, collection):
            await anyio.to_thread.run_sync(lambda: keyword.delete(collection, where=where))
        return deleted

    async def search(
        self,
        tenant: str,
        query: str,
        k: int = 5,
        *,
        conversation_id: str | None = None,
        where: Mapping[str, object] | None = None,
    ) -> list[MessageHit]:
        """The ``k`` messages of ``tenant`` that best match ``query`` (hybrid search).

        Args:
            tenant: whose messages.
            query: what to look for.
            k: how many messages at most.
            conversation_id: only this conversation's messages.
            where: a further filter on ``role`` or ``created_at``.
        """
        collection = conversation_collection(tenant)
        clauses: list[Mapping[str, object]] = []
        if conversation_id is not None:
            clauses.append({"conversation_id": {"eq": conversation_id}})
        if where:
            clauses.append(where)
        node = None if not clauses else clauses[0] if len(clauses) == 1 else {"and": clauses}
        try:
            hits = await self.pipeline.search(
                collection, query, k=k * 3, where=node, options=SearchOptions()
            )
        except NotFoundError:
            return []  # no message stored yet
        best: dict[str, MessageHit] = {}
        for hit in hits:
            meta = hit.metadata
            message_id = str(meta.get("document_id", hit.id.rsplit("#", 1)[0]))
            if message_id in best:
                continue
            created = meta.get("created_at")
            best[message_id] = MessageHit(
                message_id=message_id,
                conversation_id=str(meta.get("conversation_id", "")),
                role=str(meta.get("role", "")),
                text=hit.document,
                score=hit.score,
                created_at=float(created) if isinstance(created, int | float) else None,
            )
            if len(best) == k:
                break
        return list(best.values())
