"""The RAG pipeline: chunk, embed and index documents; search, retrieve and ground prompts.

:class:`RAGPipeline` ties an :class:`~somaagent.memory.embeddings.Embedder`, a
:class:`~somaagent.memory.stores.VectorStore` and the
:class:`~somaagent.memory.keyword.KeywordIndex` together. It knows collections by their store
names; tenants and the documents registry are the memory service's business
(:mod:`somaagent.memory.service`).

Indexing is idempotent and per document all or nothing, as far as the back-ends allow:

1. every document is checked first (empty text, reserved metadata keys, duplicate ids): one bad
   document is a :class:`~somaagent.errors.ValidationError` naming it, and nothing is written;
2. per batch, the documents are chunked and embedded before anything is written, so a model
   failure leaves their previous versions untouched;
3. the chunks are upserted into the vector store under ``"{document_id}#{index}"`` ids (the
   same text gives the same ids, so re-indexing replaces), the document's leftover chunks
   (from a longer previous version) are deleted, and the keyword index swaps the document's
   chunks in one transaction;
4. if a write fails, the batch's documents are deleted from both indexes (so none is left half
   written) and reported with the error; documents in later batches are not attempted.

The :class:`IndexReport` says which documents were stored and which were not, and in what
state each failed one is.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

import anyio
import anyio.to_thread
import numpy as np
import numpy.typing as npt

from somaagent.errors import EmbeddingError, NotFoundError, SomaAgentError, ValidationError
from somaagent.memory.chunking import Chunk, Chunker, TokenCounter
from somaagent.memory.context import augment_prompt, build_context
from somaagent.memory.documents import (
    Document,
    FailedDocument,
    FailureState,
    IndexedDocument,
    IndexProgress,
    IndexReport,
    ProgressCallback,
    check_documents,
)
from somaagent.memory.embeddings.base import Embedder
from somaagent.memory.filters import FilterInput, Scalar, parse_filter
from somaagent.memory.hybrid import FusedHit, SearchOptions, fuse
from somaagent.memory.keyword import KeywordHit, KeywordIndex, KeywordRecord
from somaagent.memory.stores.base import SearchHit, VectorRecord, VectorStore
from somaagent.types.memory import RAGContext

__all__ = [
    "Document",
    "FailedDocument",
    "IndexProgress",
    "IndexReport",
    "IndexedDocument",
    "RAGPipeline",
]

logger = logging.getLogger(__name__)


class RAGPipeline:
    """Index documents and retrieve context from them.

    Args:
        embedder: embeds chunks and queries.
        store: holds the vectors.
        keyword: the BM25 index beside the vectors.
        chunker: cuts documents; 256-token chunks with 32 tokens of overlap by default.
        count_tokens: counts tokens for context budgets when no model counter is given.
    """

    def __init__(
        self,
        embedder: Embedder,
        store: VectorStore,
        keyword: KeywordIndex,
        *,
        chunker: Chunker | None = None,
        count_tokens: TokenCounter | None = None,
    ) -> None:
        self.embedder = embedder
        self.store = store
        self.keyword = keyword
        self.chunker = chunker or Chunker(count_tokens=count_tokens)
        self._count_tokens = count_tokens

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` by the pipeline's counter (``cl100k_base`` by default)."""
        counter = self._count_tokens or self.chunker.count_tokens
        if counter is None:
            from somaagent.memory.chunking import default_token_counter

            counter = default_token_counter()
        return counter(text)

    # -- collections -------------------------------------------------------------------------

    async def create_collection(
        self,
        name: str,
        *,
        metadata: Mapping[str, Scalar] | None = None,
        exist_ok: bool = False,
    ) -> None:
        """Create a collection in the vector store and the keyword index.

        Raises:
            ConflictError: it exists (unless ``exist_ok``), or exists with another dimension.
        """
        meta = {"embedding_model": self.embedder.name, **(metadata or {})}
        await self.store.create_collection(
            name, dimension=self.embedder.dimension, metadata=meta, exist_ok=exist_ok
        )
        await anyio.to_thread.run_sync(
            lambda: self.keyword.create_collection(name, exist_ok=exist_ok)
        )

    async def delete_collection(self, name: str) -> None:
        """Delete a collection from both indexes (a missing side is not an error)."""
        with contextlib.suppress(NotFoundError):
            await self.store.delete_collection(name)
        await anyio.to_thread.run_sync(self.keyword.delete_collection, name)

    async def delete_document(self, collection: str, document_id: str) -> int:
        """Delete a document's chunks from both indexes; returns how many vectors went."""
        where = {"document_id": {"eq": document_id}}
        deleted = await self.store.delete(collection, where=where)
        await anyio.to_thread.run_sync(lambda: self.keyword.delete(collection, where=where))
        return deleted

    # -- indexing ----------------------------------------------------------------------------

    async def index_documents(
        self,
        collection: str,
        documents: Sequence[Document],
        *,
        batch_size: int = 32,
        on_progress: ProgressCallback | None = None,
    ) -> IndexReport:
        """Chunk, embed and index ``documents``, replacing earlier versions of the same ids.

        Args:
            collection: the store name of the collection.
            documents: what to index.
            batch_size: documents per batch (embedded together, written together).
            on_progress: called after each batch.

        Returns:
            The report: stored documents, failed ones and the first error.

        Raises:
            ValidationError: a document is invalid (empty text, reserved metadata key,
                duplicate id); nothing was written.
            NotFoundError: no such collection.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        check_documents(documents)
        await self.store.get_collection(collection)  # a 404 before any work
        report = IndexReport()
        chunks_done = 0
        for start in range(0, len(documents), batch_size):
            batch = documents[start : start + batch_size]
            if report.error is not None and not isinstance(report.error, EmbeddingError):
                report.failed.extend(
                    FailedDocument(d.id, "not attempted after an earlier failure") for d in batch
                )
                continue
            stored = await self._index_batch(collection, batch, report)
            chunks_done += sum(d.chunk_count for d in stored)
            if on_progress is not None:
                on_progress(
                    IndexProgress(
                        documents_done=min(start + batch_size, len(documents)),
                        documents_total=len(documents),
                        chunks_done=chunks_done,
                        failed=len(report.failed),
                    )
                )
        order = {d.id: i for i, d in enumerate(documents)}
        report.indexed.sort(key=lambda d: order[d.id])
        return report

    async def _index_batch(
        self, collection: str, batch: Sequence[Document], report: IndexReport
    ) -> list[IndexedDocument]:
        chunked = await anyio.to_thread.run_sync(self._chunk_all, batch)
        vectors_by_doc = await self._embed(batch, chunked, report)
        ready = [d for d in batch if d.id in vectors_by_doc]
        if not ready:
            return []
        records = [
            VectorRecord(
                id=chunk.id,
                vector=vector,
                document=chunk.text,
                metadata={**doc.metadata, **chunk.metadata()},
            )
            for doc in ready
            for chunk, vector in zip(chunked[doc.id], vectors_by_doc[doc.id], strict=True)
        ]
        keyword_records = [
            KeywordRecord(r.id, chunk.indexed_text, r.metadata, chunk.text)
            for r, chunk in zip(records, (c for d in ready for c in chunked[d.id]), strict=True)
        ]
        leftovers: list[dict[str, object]] = [
            {"document_id": d.id, "chunk_index": {"gte": len(chunked[d.id])}} for d in ready
        ]
        ids_filter = {"document_id": {"in": [d.id for d in ready]}}
        try:
            # Chunks the store already holds as they are (an unchanged document, or the part of
            # an edited one before the edit) are not written again: replacing a vector in an
            # HNSW index costs far more than reading it back to compare.
            held = {r.id: r for r in await self.store.get(collection, [r.id for r in records])}
            changed = [r for r in records if not _same(held.get(r.id), r)]
            if changed:
                await self.store.upsert(collection, changed)
            await self.store.delete(collection, where=_any_of(leftovers))
            await anyio.to_thread.run_sync(
                lambda: self.keyword.replace(collection, keyword_records, delete_where=ids_filter)
            )
        except SomaAgentError as exc:
            state = await self._clean_up(collection, ids_filter)
            report.failed.extend(FailedDocument(d.id, str(exc), state) for d in ready)
            report.error = report.error or exc
            return []
        stored = [
            IndexedDocument(d.id, d.source, d.content_hash, len(chunked[d.id])) for d in ready
        ]
        report.indexed.extend(stored)
        return stored

    def _chunk_all(self, batch: Sequence[Document]) -> dict[str, list[Chunk]]:
        return {
            d.id: self.chunker.chunk(d.text, document_id=d.id, source=d.source, format=d.format)
            for d in batch
        }

    async def _embed(
        self,
        batch: Sequence[Document],
        chunked: Mapping[str, list[Chunk]],
        report: IndexReport,
    ) -> dict[str, list[npt.NDArray[np.float32]]]:
        """Vectors per document; documents whose chunks fail are reported and left out."""
        pending = list(batch)
        for _attempt in range(2):
            owners = [d.id for d in pending for _ in chunked[d.id]]
            texts = [c.indexed_text for d in pending for c in chunked[d.id]]
            try:
                vectors = await self.embedder.embed(texts, input_type="document")
            except EmbeddingError as exc:
                bad = {owners[i] for i in exc.items if 0 <= i < len(owners)}
                report.error = report.error or exc
                if not bad or _attempt == 1:  # not pinned on items: the whole batch failed
                    bad = {d.id for d in pending}
                report.failed.extend(FailedDocument(d.id, str(exc)) for d in pending if d.id in bad)
                pending = [d for d in pending if d.id not in bad]
                continue
            except SomaAgentError as exc:
                report.error = report.error or exc
                report.failed.extend(FailedDocument(d.id, str(exc)) for d in pending)
                return {}
            result: dict[str, list[npt.NDArray[np.float32]]] = {d.id: [] for d in pending}
            for owner, vector in zip(owners, vectors, strict=True):
                result[owner].append(vector)
            return result
        return {}

    async def _clean_up(self, collection: str, where: FilterInput) -> FailureState:
        try:
            await self.store.delete(collection, where=where)
            await anyio.to_thread.run_sync(lambda: self.keyword.delete(collection, where=where))
        except SomaAgentError as exc:
            logger.warning("cannot clean up after a failed index of %s: %s", collection, exc)
            return "unknown"
        return "removed"

    # -- search ------------------------------------------------------------------------------

    async def search(
        self,
        collection: str,
        query: str,
        *,
        k: int = 10,
        where: FilterInput = None,
        options: SearchOptions | None = None,
    ) -> list[FusedHit]:
        """The ``k`` best chunks for ``query``: by vector, by keyword, or both fused.

        Raises:
            ValidationError: a bad filter or ``k``.
            NotFoundError: no such collection.
        """
        options = options or SearchOptions()
        if k < 1:
            raise ValidationError(
                "k must be at least 1",
                errors=[{"loc": ["body", "k"], "msg": "must be at least 1", "type": "value_error"}],
            )
        node = parse_filter(where)
        depth = options.depth(k)
        vector_hits: list[SearchHit] = []
        keyword_hits: list[KeywordHit] = []

        async def by_vector() -> None:
            nonlocal vector_hits
            embedded = await self.embedder.embed([query], input_type="query")
            vector_hits = await self.store.search(collection, embedded[0], k=depth, where=node)

        async def by_keyword() -> None:
            nonlocal keyword_hits
            keyword_hits = await anyio.to_thread.run_sync(
                lambda: self.keyword.search(collection, query, k=depth, where=node)
            )

        sides = [
            f
            for f, on in (
                (by_vector, options.mode != "keyword"),
                (by_keyword, options.mode != "vector"),
            )
            if on
        ]
        if len(sides) == 1:
            await sides[0]()
        else:
            # Both sides at once; a failure is raised as itself, not as an exception group.
            failures: list[Exception] = []

            async def guarded(side: Callable[[], Awaitable[None]]) -> None:
                try:
                    await side()
                except Exception as exc:
                    failures.append(exc)

            async with anyio.create_task_group() as group:
                for side in sides:
                    group.start_soon(guarded, side)
            if failures:
                raise failures[0]
        return fuse(vector_hits, keyword_hits, k=k, options=options)

    async def retrieve_context(
        self,
        query: str,
        collection: str,
        k: int = 5,
        filter: FilterInput = None,
        token_budget: int = 4000,
        *,
        options: SearchOptions | None = None,
        count_tokens: TokenCounter | None = None,
    ) -> RAGContext:
        """Search, then format the best chunks as context within ``token_budget`` tokens.

        Args:
            query: the question.
            collection: the store name of the collection.
            k: how many chunks at most.
            filter: a metadata filter.
            token_budget: the most tokens the context may have.
            options: search mode and fusion.
            count_tokens: the counter of the model the context is for (the pipeline's when
                ``None``).
        """
        hits = await self.search(collection, query, k=k, where=filter, options=options)
        counter = count_tokens or self.count_tokens
        return await anyio.to_thread.run_sync(
            lambda: build_context(
                query, collection, hits, token_budget=token_budget, count_tokens=counter
            )
        )

    def augment_prompt(self, query: str, context: RAGContext) -> str:
        """The prompt asking ``query`` over ``context``; see :func:`.context.augment_prompt`."""
        return augment_prompt(query, context)


def _any_of(clauses: Sequence[Mapping[str, object]]) -> dict[str, object]:
    return dict(clauses[0]) if len(clauses) == 1 else {"or": list(clauses)}


def _same(old: VectorRecord | None, new: VectorRecord) -> bool:
    """Whether ``old`` (as stored) already is ``new``: same text, metadata and vector."""
    if old is None or old.document != new.document or dict(old.metadata) != dict(new.metadata):
        return False
    before = np.asarray(old.vector, dtype=np.float32)
    after = np.asarray(new.vector, dtype=np.float32)
    return before.shape == after.shape and bool(np.allclose(before, after, atol=1e-6))
