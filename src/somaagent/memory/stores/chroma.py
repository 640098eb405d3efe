"""ChromaDB, embedded and persistent: the default vector store (``chroma:///path``).

The ``chromadb`` client is blocking, so every call runs in a worker thread. Collections carry
their settings in Chroma's collection metadata (``soma:dimension``, ``soma:metric``, and
``hnsw:space`` = ``cosine`` / ``ip`` / ``l2``); Chroma's ``l2`` distance is squared and is
reported here as its square root, ``ip`` is already ``1 - a·b``. Chroma's HNSW searches with
``ef = 10`` by default, too few for recall; this store sets ``hnsw:search_ef`` (100) and
``hnsw:construction_ef`` (200) on the collections it creates. Filters map one to one onto
Chroma's ``where`` (whose ``$ne``/``$nin`` pass records without the field, as SomaAgent's do);
an ``in`` list mixing types is split by type, since Chroma wants one type per list.
Telemetry is off, and no embedding function is attached: vectors always come from SomaAgent.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final, TypeVar

import anyio.to_thread

from somaagent.errors import SomaAgentError, VectorStoreError
from somaagent.memory.filters import And, Condition, Filter, FilterInput, Or
from somaagent.memory.stores import _common as common
from somaagent.memory.stores._common import missing_extra
from somaagent.memory.stores.base import (
    CollectionInfo,
    MetadataValue,
    Metric,
    SearchHit,
    VectorRecord,
    VectorStore,
)

__all__ = ["ChromaStore", "to_where"]

T = TypeVar("T")
_SPACE: Final[dict[str, str]] = {"cosine": "cosine", "dot": "ip", "euclidean": "l2"}
_OURS: Final = ("soma:", "hnsw:")


def _type_key(value: object) -> str:
    return type(value).__name__


def to_where(node: Filter) -> dict[str, Any]:
    """Translate a parsed filter into Chroma's ``where`` document."""
    if isinstance(node, And | Or):
        key = "$and" if isinstance(node, And) else "$or"
        return {key: [to_where(clause) for clause in node.clauses]}
    return _condition(node)


def _condition(node: Condition) -> dict[str, Any]:
    if node.op not in ("in", "nin"):
        return {node.field: {f"${node.op}": node.value}}
    assert isinstance(node.value, tuple)
    groups: dict[str, list[Any]] = {}
    for value in node.value:
        groups.setdefault(_type_key(value), []).append(value)
    parts = [{node.field: {f"${node.op}": values}} for values in groups.values()]
    if len(parts) == 1:
        return parts[0]
    return {"$or": parts} if node.op == "in" else {"$and": parts}


class ChromaStore(VectorStore):
    """ChromaDB embedded (see the module docstring).

    Args:
        path: the folder of a persistent store, or ``None`` for an in-memory one (shared by
            every in-memory Chroma client of the process).
        search_ef: HNSW ``ef`` at query time for new collections.
        construction_ef: HNSW ``ef`` at build time for new collections.
        m: HNSW ``M`` for new collections.
        timeout: accepted for symmetry with the server back-ends (embedded: unused).
    """

    backend = "chroma"

    def __init__(
        self,
        path: str | None = None,
        *,
        search_ef: int = 100,
        construction_ef: int = 200,
        m: int = 16,
        timeout: float | None = None,
    ) -> None:
        self.path = path
        self.hnsw = {
            "hnsw:search_ef": search_ef,
            "hnsw:construction_ef": construction_ef,
            "hnsw:M": m,
        }
        self._client: Any = None
        self._errors_module: Any = None
        self._handles: dict[str, Any] = {}
        # Chroma's client constructor is not thread-safe: two worker threads making the first
        # client at once share a half-started system ("'RustBindingsAPI' object has no
        # attribute 'bindings'", "Could not connect to tenant"). One thread makes it.
        self._connecting = threading.Lock()

    # -- plumbing --------------------------------------------------------------------------

    def _connect(self) -> Any:
        if self._client is not None:
            return self._client
        with self._connecting:
            if self._client is None:
                self._make_client()
        return self._client

    def _make_client(self) -> None:
        try:
            import chromadb
            import chromadb.errors
            from chromadb.config import Settings
        except ImportError:
            raise missing_extra("Chroma", "chromadb", "server") from None
        settings = Settings(anonymized_telemetry=False, allow_reset=False)
        with self._mapped(""):
            if self.path is None:
                self._client = chromadb.EphemeralClient(settings=settings)
            else:
                self._client = chromadb.PersistentClient(path=self.path, settings=settings)
        self._errors_module = chromadb.errors

    @contextlib.contextmanager
    def _mapped(self, name: str) -> Iterator[None]:
        try:
            yield
        except SomaAgentError:
            raise
        except Exception as exc:
            errors = self._errors_module
            text = str(exc)
            if errors is not None and isinstance(exc, errors.NotFoundError):
                self._handles.pop(name, None)  # deleted behind our back
                raise common.not_found(name) from None
            if "already exists" in text:
                raise common.conflict(name) from None
            if "does not exist" in text:
                raise common.not_found(name) from None
            raise VectorStoreError(
                f"chroma failed: {type(exc).__name__}: {text[:300]}", backend=self.backend
            ) from exc

    async def _run(self, name: str, work: Callable[[], T]) -> T:
        def call() -> T:
            self._connect()
            with self._mapped(name):
                return work()

        return await anyio.to_thread.run_sync(call)

    def _collection(self, name: str) -> Any:
        # Chroma's collection handles are cached: looking one up costs as much as a search
        cached = self._handles.get(name)
        if cached is not None:
            return cached
        collection = self._client.get_collection(common.check_name(name), embedding_function=None)
        if "soma:dimension" not in (collection.metadata or {}):
            raise common.not_found(name)
        self._handles[name] = collection
        return collection

    @staticmethod
    def _info(collection: Any) -> CollectionInfo:
        meta = dict(collection.metadata or {})
        user = {key: value for key, value in meta.items() if not key.startswith(_OURS)}
        return CollectionInfo(
            name=collection.name,
            dimension=int(meta["soma:dimension"]),
            metric=meta.get("soma:metric", "cosine"),
            count=int(collection.count()),
            metadata=user,
        )

    # -- collections -----------------------------------------------------------------------

    async def create_collection(
        self,
        name: str,
        *,
        dimension: int,
        metric: Metric = "cosine",
        metadata: Mapping[str, MetadataValue] | None = None,
        exist_ok: bool = False,
    ) -> CollectionInfo:
        common.check_name(name)
        common.check_dimension(dimension, metric)
        user = common.check_metadata(metadata, ["metadata"])
        settings = {
            **{key: value for key, value in user.items() if not key.startswith(_OURS)},
            "soma:dimension": dimension,
            "soma:metric": metric,
            "hnsw:space": _SPACE[metric],
            **self.hnsw,
        }

        def create() -> CollectionInfo:
            existing = {
                c if isinstance(c, str) else c.name for c in self._client.list_collections()
            }
            if name in existing:
                info = self._info(self._collection(name))
                if not exist_ok:
                    raise common.conflict(name)
                if (info.dimension, info.metric) != (dimension, metric):
                    raise common.conflict(name, info, f"{dimension} and {metric!r}")
                return info
            created = self._client.create_collection(
                name, metadata=settings, embedding_function=None
            )
            return self._info(created)

        return await self._run(name, create)

    async def delete_collection(self, name: str) -> None:
        def delete() -> None:
            self._collection(name)
            self._handles.pop(name, None)
            self._client.delete_collection(name)

        await self._run(name, delete)

    async def list_collections(self) -> list[CollectionInfo]:
        def listing() -> list[CollectionInfo]:
            found = []
            for item in self._client.list_collections():
                name = item if isinstance(item, str) else item.name
                collection = self._client.get_collection(name, embedding_function=None)
                if "soma:dimension" in (collection.metadata or {}):
                    found.append(self._info(collection))
            return sorted(found, key=lambda info: info.name)

        return await self._run("", listing)

    async def get_collection(self, name: str) -> CollectionInfo:
        return await self._run(name, lambda: self._info(self._collection(name)))

    # -- records ---------------------------------------------------------------------------

    async def upsert(self, collection: str, records: Sequence[VectorRecord]) -> None:
        def upsert() -> None:
            target = self._collection(collection)
            dimension = int(target.metadata["soma:dimension"])
            ids, rows, metadata = common.check_records(records, dimension)
            step = max(1, int(self._client.get_max_batch_size()))
            for start in range(0, len(ids), step):
                end = start + step
                documents = [record.document for record in records[start:end]]
                metas = self._replacing(target, ids[start:end], metadata[start:end], documents)
                target.upsert(
                    ids=ids[start:end],
                    embeddings=rows[start:end],
                    metadatas=metas,
                    documents=documents,
                )

        await self._run(collection, upsert)

    @staticmethod
    def _replacing(
        target: Any,
        ids: list[str],
        metadata: list[dict[str, MetadataValue]],
        documents: list[str | None],
    ) -> list[dict[str, Any] | None]:
        """Metadata that makes Chroma's merging upsert a replacement.

        Chroma keeps old metadata keys and an old document the new record lacks: keys set to
        ``None`` are removed, and a record whose document goes away is deleted first.
        """
        old = target.get(ids=ids, include=["metadatas", "documents"])
        before = {
            rid: (old["metadatas"][i] or {}, old["documents"][i])
            for i, rid in enumerate(old["ids"])
        }
        metas: list[dict[str, Any] | None] = []
        drop: list[str] = []
        for rid, meta, document in zip(ids, metadata, documents, strict=True):
            merged: dict[str, Any] = dict(meta)
            if rid in before:
                old_meta, old_document = before[rid]
                merged.update({key: None for key in old_meta if key not in meta})
                if document is None and old_document is not None:
                    drop.append(rid)
                    merged = dict(meta)
            metas.append(merged or None)
        if drop:
            target.delete(ids=drop)
        return metas

    async def get(self, collection: str, ids: Sequence[str]) -> list[VectorRecord]:
        def get() -> list[VectorRecord]:
            if not ids:
                self._collection(collection)
                return []
            found = self._collection(collection).get(
                ids=list(dict.fromkeys(ids)), include=["embeddings", "metadatas", "documents"]
            )
            by_id = {
                rid: VectorRecord(
                    id=rid,
                    vector=[float(x) for x in found["embeddings"][index]],
                    document=found["documents"][index],
                    metadata=dict(found["metadatas"][index] or {}),
                )
                for index, rid in enumerate(found["ids"])
            }
            return [by_id[rid] for rid in ids if rid in by_id]

        return await self._run(collection, get)

    def _matching(self, target: Any, ids: Sequence[str] | None, where: Filter | None) -> list[str]:
        kwargs: dict[str, Any] = {"include": []}
        if ids is not None:
            kwargs["ids"] = list(ids)
        if where is not None:
            kwargs["where"] = to_where(where)
        return list(target.get(**kwargs)["ids"])

    async def delete(
        self,
        collection: str,
        *,
        ids: Sequence[str] | None = None,
        where: FilterInput = None,
    ) -> int:
        node = common.where_of(where)
        common.require_selection(ids, node)

        def delete() -> int:
            target = self._collection(collection)
            if ids is not None and not ids:
                return 0
            matched = self._matching(target, ids, node)
            if matched:
                target.delete(ids=matched)
            return len(matched)

        return await self._run(collection, delete)

    async def search(
        self,
        collection: str,
        vector: Any,
        *,
        k: int = 10,
        where: FilterInput = None,
    ) -> list[SearchHit]:
        common.check_k(k)
        node = common.where_of(where)

        def search() -> list[SearchHit]:
            target = self._collection(collection)
            metric: Metric = target.metadata.get("soma:metric", "cosine")
            query = common.check_query(vector, int(target.metadata["soma:dimension"]))
            kwargs: dict[str, Any] = {}
            if node is not None:
                kwargs["where"] = to_where(node)
            found = target.query(
                query_embeddings=[query],
                n_results=k,
                include=["distances", "metadatas", "documents"],
                **kwargs,
            )
            hits = []
            for index, rid in enumerate(found["ids"][0]):
                distance = float(found["distances"][0][index])
                if metric == "euclidean":
                    distance = math.sqrt(max(distance, 0.0))
                hits.append(
                    common.hit(
                        metric,
                        distance,
                        rid,
                        found["documents"][0][index],
                        found["metadatas"][0][index],
                    )
                )
            return hits

        return await self._run(collection, search)

    async def count(self, collection: str, *, where: FilterInput = None) -> int:
        node = common.where_of(where)

        def count() -> int:
            target = self._collection(collection)
            if node is None:
                return int(target.count())
            return len(self._matching(target, None, node))

        return await self._run(collection, count)

    async def aclose(self) -> None:
        self._client = None
        self._handles.clear()
