"""``client.memory`` (collections, documents, search, retrieval) and ``client.embeddings``.

The calls are built once in :mod:`._memory_calls`; the sync and async classes here only send
them.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from typing import Any

from somaagent.errors import SomaAgentError
from somaagent.sdk._calls import AsyncSender, SyncSender
from somaagent.sdk._memory_calls import (
    Documents,
    Fusion,
    Mode,
    PathLike,
    Progress,
    ProgressCallback,
    as_document,
    batches,
    conversations_call,
    create_call,
    delete_call,
    delete_document_call,
    documents_call,
    embeddings_call,
    get_call,
    index_call,
    list_call,
    merge_results,
    query_body,
    read_documents,
    retrieve_call,
    search_call,
)
from somaagent.types import Page
from somaagent.types.memory import (
    Collection,
    DocumentInfo,
    EmbeddingList,
    IndexResult,
    MessageHit,
    RAGContext,
    SearchResults,
)

__all__ = ["AsyncEmbeddings", "AsyncMemory", "Embeddings", "Memory", "Progress", "read_documents"]


class Memory:
    """``client.memory``: collections of documents to search and ground answers in.

    ::

        client.memory.create("handbook")
        client.memory.index_path("handbook", "docs/")          # a folder of Markdown
        for hit in client.memory.search("handbook", "refund policy").data:
            print(hit.score, hit.source, hit.text)
        context = client.memory.retrieve("handbook", "How long do refunds take?")
    """

    def __init__(self, client: SyncSender) -> None:
        self._client = client

    def create(
        self, name: str, *, description: str = "", metadata: Mapping[str, Any] | None = None
    ) -> Collection:
        """Create a collection (:class:`~somaagent.errors.ConflictError` if it exists)."""
        return self._client._call(create_call(name, description=description, metadata=metadata))

    def list(self, *, limit: int = 20, cursor: str | None = None) -> Page[Collection]:
        """One page of your collections, by name."""
        return self._client._call(list_call(limit=limit, cursor=cursor))

    def get(self, name: str) -> Collection:
        """One collection with its document and chunk counts."""
        return self._client._call(get_call(name))

    def delete(self, name: str) -> None:
        """Delete a collection with its documents."""
        self._client._call(delete_call(name))

    def index(
        self,
        name: str,
        documents: Documents,
        *,
        force: bool = False,
        batch_size: int = 32,
        on_progress: ProgressCallback | None = None,
    ) -> IndexResult:
        """Index documents (``DocumentIn``, dicts, or plain strings), in batches.

        Re-indexing a document id replaces it; an unchanged one is skipped unless ``force``.

        Raises:
            APIError: a batch failed. Earlier batches stay stored: their result is the
                exception's ``partial`` attribute.
        """
        docs = [as_document(d) for d in documents]
        total = IndexResult()
        done = 0
        for batch in batches(docs, batch_size):
            try:
                part = self._client._call(index_call(name, batch, force=force))
            except SomaAgentError as exc:
                exc.partial = total  # type: ignore[attr-defined]
                raise
            merge_results(total, part)
            done += len(batch)
            if on_progress is not None:
                on_progress(Progress(done, len(docs), total.chunk_count))
        return total

    def index_path(
        self,
        name: str,
        path: PathLike,
        *,
        metadata: Mapping[str, Any] | None = None,
        force: bool = False,
        batch_size: int = 32,
        on_progress: ProgressCallback | None = None,
    ) -> IndexResult:
        """Index a text or Markdown file, or every one in a folder (ids: relative paths)."""
        documents = read_documents(path, metadata=metadata)
        return self.index(
            name, documents, force=force, batch_size=batch_size, on_progress=on_progress
        )

    def documents(
        self, name: str, *, limit: int = 50, cursor: str | None = None
    ) -> Page[DocumentInfo]:
        """One page of a collection's documents, by id."""
        return self._client._call(documents_call(name, limit=limit, cursor=cursor))

    def delete_document(self, name: str, document_id: str) -> None:
        """Delete one document and its chunks."""
        self._client._call(delete_document_call(name, document_id))

    def search(
        self,
        name: str,
        query: str,
        *,
        k: int = 10,
        filter: Mapping[str, Any] | None = None,
        mode: Mode = "hybrid",
        fusion: Fusion = "rrf",
        alpha: float = 0.5,
    ) -> SearchResults:
        """Search a collection; ``filter`` uses the filter language (``{"topic": "bio"}``)."""
        body = query_body(query, k=k, filter=filter, mode=mode, fusion=fusion, alpha=alpha)
        return self._client._call(search_call(name, body))

    def retrieve(
        self,
        name: str,
        query: str,
        *,
        k: int = 5,
        filter: Mapping[str, Any] | None = None,
        token_budget: int = 4000,
        model: str | None = None,
        mode: Mode = "hybrid",
    ) -> RAGContext:
        """Context for a prompt within ``token_budget`` tokens (of ``model``), with sources."""
        body = query_body(
            query, k=k, filter=filter, token_budget=token_budget, model=model, mode=mode
        )
        return self._client._call(retrieve_call(name, body))

    def search_conversations(
        self, query: str, *, k: int = 5, conversation_id: str | None = None
    ) -> builtins.list[MessageHit]:
        """Your stored conversation messages that best match ``query``."""
        return self._client._call(conversations_call(query, k=k, conversation_id=conversation_id))


class AsyncMemory:
    """``client.memory`` of :class:`AsyncClient`; see :class:`Memory`."""

    def __init__(self, client: AsyncSender) -> None:
        self._client = client

    async def create(
        self, name: str, *, description: str = "", metadata: Mapping[str, Any] | None = None
    ) -> Collection:
        """Create a collection; see :meth:`Memory.create`."""
        call = create_call(name, description=description, metadata=metadata)
        return await self._client._call(call)

    async def list(self, *, limit: int = 20, cursor: str | None = None) -> Page[Collection]:
        """One page of your collections, by name."""
        return await self._client._call(list_call(limit=limit, cursor=cursor))

    async def get(self, name: str) -> Collection:
        """One collection with its document and chunk counts."""
        return await self._client._call(get_call(name))

    async def delete(self, name: str) -> None:
        """Delete a collection with its documents."""
        await self._client._call(delete_call(name))

    async def index(
        self,
        name: str,
        documents: Documents,
        *,
        force: bool = False,
        batch_size: int = 32,
        on_progress: ProgressCallback | None = None,
    ) -> IndexResult:
        """Index documents in batches; see :meth:`Memory.index`."""
        docs = [as_document(d) for d in documents]
        total = IndexResult()
        done = 0
        for batch in batches(docs, batch_size):
            try:
                part = await self._client._call(index_call(name, batch, force=force))
            except SomaAgentError as exc:
                exc.partial = total  # type: ignore[attr-defined]
                raise
            merge_results(total, part)
            done += len(batch)
            if on_progress is not None:
                on_progress(Progress(done, len(docs), total.chunk_count))
        return total

    async def index_path(
        self,
        name: str,
        path: PathLike,
        *,
        metadata: Mapping[str, Any] | None = None,
        force: bool = False,
        batch_size: int = 32,
        on_progress: ProgressCallback | None = None,
    ) -> IndexResult:
        """Index a file or a folder of them; see :meth:`Memory.index_path`."""
        documents = read_documents(path, metadata=metadata)
        return await self.index(
            name, documents, force=force, batch_size=batch_size, on_progress=on_progress
        )

    async def documents(
        self, name: str, *, limit: int = 50, cursor: str | None = None
    ) -> Page[DocumentInfo]:
        """One page of a collection's documents, by id."""
        return await self._client._call(documents_call(name, limit=limit, cursor=cursor))

    async def delete_document(self, name: str, document_id: str) -> None:
        """Delete one document and its chunks."""
        await self._client._call(delete_document_call(name, document_id))

    async def search(
        self,
        name: str,
        query: str,
        *,
        k: int = 10,
        filter: Mapping[str, Any] | None = None,
        mode: Mode = "hybrid",
        fusion: Fusion = "rrf",
        alpha: float = 0.5,
    ) -> SearchResults:
        """Search a collection; see :meth:`Memory.search`."""
        body = query_body(query, k=k, filter=filter, mode=mode, fusion=fusion, alpha=alpha)
        return await self._client._call(search_call(name, body))

    async def retrieve(
        self,
        name: str,
        query: str,
        *,
        k: int = 5,
        filter: Mapping[str, Any] | None = None,
        token_budget: int = 4000,
        model: str | None = None,
        mode: Mode = "hybrid",
    ) -> RAGContext:
        """Context for a prompt; see :meth:`Memory.retrieve`."""
        body = query_body(
            query, k=k, filter=filter, token_budget=token_budget, model=model, mode=mode
        )
        return await self._client._call(retrieve_call(name, body))

    async def search_conversations(
        self, query: str, *, k: int = 5, conversation_id: str | None = None
    ) -> builtins.list[MessageHit]:
        """Your stored conversation messages that best match ``query``."""
        call = conversations_call(query, k=k, conversation_id=conversation_id)
        return await self._client._call(call)


class Embeddings:
    """``client.embeddings``: vectors for text, from the gateway's embedding models."""

    def __init__(self, client: SyncSender) -> None:
        self._client = client

    def create(
        self,
        input: str | Sequence[str],
        *,
        model: str = "all-MiniLM-L6-v2",
        dimensions: int | None = None,
    ) -> EmbeddingList:
        """Embed one text or a list of them; vectors come back as lists of floats."""
        return self._client._call(embeddings_call(input, model=model, dimensions=dimensions))


class AsyncEmbeddings:
    """``client.embeddings`` of :class:`AsyncClient`; see :class:`Embeddings`."""

    def __init__(self, client: AsyncSender) -> None:
        self._client = client

    async def create(
        self,
        input: str | Sequence[str],
        *,
        model: str = "all-MiniLM-L6-v2",
        dimensions: int | None = None,
    ) -> EmbeddingList:
        """Embed one text or a list of them; see :meth:`Embeddings.create`."""
        call = embeddings_call(input, model=model, dimensions=dimensions)
        return await self._client._call(call)
