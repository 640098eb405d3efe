"""Pinecone through the official ``pinecone`` SDK (``pinecone://?api_key=..&host=..``).

A Pinecone index has one dimension and one metric, so a SomaAgent collection is a *namespace*
of the index (``<namespace_prefix><name>``), and ``create_collection`` checks the collection's
dimension and metric against the index's. Pinecone has no empty namespaces and no collection
metadata, so collections are listed in a catalogue namespace (``<prefix>soma-catalogue``), one
marker vector per collection carrying its settings. Documents travel in the metadata key
``_soma_document`` (reserved; Pinecone caps metadata at 40 KB per record).

Only what serverless indexes support is used: deletes by filter and counts by filter are made
of a filtered query (``top_k`` 10,000) followed by deletes by id; a filtered ``count`` beyond
10,000 matches is refused rather than wrong. Filters translate to Pinecone's operators; ``ne``
and ``nin`` add ``$exists: false`` so that records without the field pass whatever Pinecone's
own reading, ``in`` lists are split by type (booleans become ``$eq``). Numbers come back as
floats (Pinecone stores float64). The SDK blocks, so calls run in worker threads.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, TypeVar

import anyio
import anyio.to_thread

from somaagent.errors import (
    ConfigurationError,
    NotFoundError,
    SomaAgentError,
    ValidationError,
    VectorStoreError,
)
from somaagent.memory.filters import And, Condition, Filter, FilterInput, Or, matches
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

__all__ = ["PineconeStore", "to_pinecone_filter"]

T = TypeVar("T")
DOCUMENT_KEY: Final = "_soma_document"
MAX_TOP_K: Final = 10_000
_BATCH: Final = 100
_METRICS: Final[dict[str, str]] = {
    "cosine": "cosine",
    "dotproduct": "dot",
    "euclidean": "euclidean",
}


def to_pinecone_filter(node: Filter) -> dict[str, Any]:
    """Translate a parsed filter into Pinecone's metadata filter."""
    if isinstance(node, And | Or):
        key = "$and" if isinstance(node, And) else "$or"
        return {key: [to_pinecone_filter(clause) for clause in node.clauses]}
    return _condition(node)


def _any(parts: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return parts[0] if len(parts) == 1 else {key: parts}


def _condition(node: Condition) -> dict[str, Any]:
    field, missing = node.field, {node.field: {"$exists": False}}
    if node.op in ("eq", "gt", "gte", "lt", "lte"):
        return {field: {f"${node.op}": node.value}}
    if node.op == "ne":
        return {"$or": [{field: {"$ne": node.value}}, missing]}
    assert isinstance(node.value, tuple)
    strings = [v for v in node.value if isinstance(v, str)]
    numbers = [v for v in node.value if isinstance(v, int | float) and not isinstance(v, bool)]
    bools = [v for v in node.value if isinstance(v, bool)]
    negate = node.op == "nin"
    groups: list[list[Any]] = [strings, numbers]
    parts: list[dict[str, Any]] = [
        {field: {"$nin" if negate else "$in": group}} for group in groups if group
    ]
    parts += [{field: {"$ne" if negate else "$eq": flag}} for flag in bools]
    if not negate:
        return _any(parts, "$or")
    return {"$or": [_any(parts, "$and"), missing]}


class PineconeStore(VectorStore):
    """Pinecone (see the module docstring).

    Args:
        host: the index host (``https://name-xxxx.svc.region.pinecone.io``); ``http://`` is
            allowed for local stand-ins.
        api_key: the key; defaults to ``PINECONE_API_KEY``.
        namespace_prefix: put every collection's namespace under this prefix.
        timeout: seconds per request.
    """

    backend = "pinecone"

    def __init__(
        self,
        *,
        host: str | None = None,
        api_key: str | None = None,
        namespace_prefix: str = "",
        timeout: float = 30.0,
    ) -> None:
        if not host:
            raise ConfigurationError(
                "the pinecone store needs the index host: pinecone://?host=...&api_key=..."
            )
        self.host = host
        self.api_key = api_key
        self.prefix = namespace_prefix
        self.timeout = timeout
        self._index: Any = None
        self._limiter = anyio.CapacityLimiter(8)
        self._shape: tuple[int, Metric] | None = None

    @property
    def catalogue(self) -> str:
        return f"{self.prefix}soma-catalogue"

    def _namespace(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def _connect(self) -> Any:
        if self._index is None:
            try:
                from pinecone import Pinecone
            except ImportError:
                raise missing_extra("Pinecone", "pinecone", "pinecone") from None
            client = Pinecone(api_key=self.api_key) if self.api_key else Pinecone()
            self._index = client.Index(host=self.host)
        return self._index

    async def _run(self, work: Callable[[Any], T]) -> T:
        def call() -> T:
            try:
                return work(self._connect())
            except SomaAgentError:
                raise
            except Exception as exc:
                raise VectorStoreError(
                    f"pinecone failed: {type(exc).__name__}: {str(exc)[:300]}",
                    backend=self.backend,
                ) from exc

        return await anyio.to_thread.run_sync(call, limiter=self._limiter)

    # -- the index and the catalogue -------------------------------------------------------

    def _index_shape(self, index: Any) -> tuple[int, Metric]:
        if self._shape is None:
            stats = index.describe_index_stats()
            metric = _METRICS.get(str(stats.metric or "cosine"), "cosine")
            shape: tuple[int, Metric] = (int(stats.dimension), metric)  # type: ignore[assignment]
            self._shape = shape
        return self._shape

    def _marker(self, index: Any) -> list[float]:
        dimension = self._index_shape(index)[0]
        return [1.0] + [0.0] * (dimension - 1)

    def _entry(self, index: Any, name: str) -> dict[str, Any]:
        common.check_name(name)
        found = index.fetch(ids=[name], namespace=self.catalogue).vectors.get(name)
        if found is None:
            raise common.not_found(name)
        return dict(found.metadata or {})

    def _info(self, index: Any, name: str, entry: Mapping[str, Any]) -> CollectionInfo:
        stats = index.describe_index_stats()
        summary = stats.namespaces.get(self._namespace(name))
        return CollectionInfo(
            name=name,
            dimension=int(entry["dimension"]),
            metric=entry["metric"],
            count=int(summary.vector_count) if summary is not None else 0,
            metadata=json.loads(entry.get("metadata") or "{}"),
        )

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

        def create(index: Any) -> CollectionInfo:
            shape = self._index_shape(index)
            if (dimension, metric) != shape:
                raise ValidationError(
                    f"this Pinecone index holds {shape[0]}-d {shape[1]} vectors; a collection "
                    f"of {dimension}-d {metric} vectors needs another index",
                    errors=[
                        {
                            "loc": ["dimension"],
                            "msg": "does not match the index",
                            "type": "value_error",
                        }
                    ],
                )
            try:
                existing = self._entry(index, name)
            except NotFoundError:
                entry = {"dimension": dimension, "metric": metric, "metadata": json.dumps(user)}
                index.upsert(
                    vectors=[{"id": name, "values": self._marker(index), "metadata": entry}],
                    namespace=self.catalogue,
                )
                return self._info(index, name, entry)
            if not exist_ok:
                raise common.conflict(name)
            return self._info(index, name, existing)

        return await self._run(create)

    async def delete_collection(self, name: str) -> None:
        def delete(index: Any) -> None:
            self._entry(index, name)
            if self._namespace(name) in index.describe_index_stats().namespaces:
                index.delete(delete_all=True, namespace=self._namespace(name))
            index.delete(ids=[name], namespace=self.catalogue)

        await self._run(delete)

    async def list_collections(self) -> list[CollectionInfo]:
        def listing(index: Any) -> list[CollectionInfo]:
            found = index.query(
                vector=self._marker(index),
                top_k=MAX_TOP_K,
                namespace=self.catalogue,
                include_metadata=True,
            ).matches
            infos = [self._info(index, m.id, dict(m.metadata or {})) for m in found]
            return sorted(infos, key=lambda info: info.name)

        return await self._run(listing)

    async def get_collection(self, name: str) -> CollectionInfo:
        return await self._run(lambda index: self._info(index, name, self._entry(index, name)))

    # -- records ---------------------------------------------------------------------------

    async def upsert(self, collection: str, records: Sequence[VectorRecord]) -> None:
        def upsert(index: Any) -> None:
            entry = self._entry(index, collection)
            ids, rows, metadata = common.check_records(records, int(entry["dimension"]))
            items = []
            for i, rid in enumerate(ids):
                if DOCUMENT_KEY in metadata[i]:
                    raise ValidationError(
                        f"record {i} ({rid!r}): the metadata key {DOCUMENT_KEY!r} is reserved",
                        errors=[
                            {
                                "loc": ["records", i, "metadata", DOCUMENT_KEY],
                                "msg": "reserved key",
                                "type": "value_error",
                            }
                        ],
                    )
                if not rows[i].any():
                    raise ValidationError(
                        f"record {i} ({rid!r}): Pinecone refuses an all-zero vector",
                        errors=[
                            {
                                "loc": ["records", i, "vector"],
                                "msg": "all zero",
                                "type": "value_error",
                            }
                        ],
                    )
                meta: dict[str, Any] = dict(metadata[i])
                if records[i].document is not None:
                    meta[DOCUMENT_KEY] = records[i].document
                items.append({"id": rid, "values": rows[i].tolist(), "metadata": meta})
            for start in range(0, len(items), _BATCH):
                index.upsert(
                    vectors=items[start : start + _BATCH], namespace=self._namespace(collection)
                )

        await self._run(upsert)

    @staticmethod
    def _split(metadata: Mapping[str, Any] | None) -> tuple[str | None, dict[str, Any]]:
        meta = dict(metadata or {})
        document = meta.pop(DOCUMENT_KEY, None)
        return document, meta

    def _fetch(self, index: Any, collection: str, ids: Sequence[str]) -> dict[str, VectorRecord]:
        found: dict[str, VectorRecord] = {}
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), 1000):
            vectors = index.fetch(
                ids=unique[start : start + 1000], namespace=self._namespace(collection)
            ).vectors
            for rid, vector in vectors.items():
                document, meta = self._split(vector.metadata)
                found[rid] = VectorRecord(
                    id=rid, vector=list(vector.values), document=document, metadata=meta
                )
        return found

    async def get(self, collection: str, ids: Sequence[str]) -> list[VectorRecord]:
        def get(index: Any) -> list[VectorRecord]:
            self._entry(index, collection)
            by_id = self._fetch(index, collection, ids) if ids else {}
            return [by_id[rid] for rid in ids if rid in by_id]

        return await self._run(get)

    def _matching_ids(self, index: Any, collection: str, node: Filter) -> list[str]:
        found = index.query(
            vector=self._marker(index),
            top_k=MAX_TOP_K,
            namespace=self._namespace(collection),
            filter=to_pinecone_filter(node),
            include_metadata=False,
        ).matches
        return [match.id for match in found]

    async def delete(
        self,
        collection: str,
        *,
        ids: Sequence[str] | None = None,
        where: FilterInput = None,
    ) -> int:
        node = common.where_of(where)
        common.require_selection(ids, node)

        def delete(index: Any) -> int:
            self._entry(index, collection)
            namespace = self._namespace(collection)
            deleted = 0
            if ids is not None:
                found = self._fetch(index, collection, ids) if ids else {}
                doomed = [rid for rid, r in found.items() if matches(node, r.metadata)]
                for start in range(0, len(doomed), 1000):
                    index.delete(ids=doomed[start : start + 1000], namespace=namespace)
                return len(doomed)
            assert node is not None
            while doomed := self._matching_ids(index, collection, node):
                for start in range(0, len(doomed), 1000):
                    index.delete(ids=doomed[start : start + 1000], namespace=namespace)
                deleted += len(doomed)
                if len(doomed) < MAX_TOP_K:
                    break
            return deleted

        return await self._run(delete)

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
        native = to_pinecone_filter(node) if node is not None else None

        def search(index: Any) -> list[SearchHit]:
            entry = self._entry(index, collection)
            metric: Metric = entry["metric"]
            query = common.check_query(vector, int(entry["dimension"]))
            found = index.query(
                vector=query.tolist(),
                top_k=k,
                namespace=self._namespace(collection),
                filter=native,
                include_metadata=True,
            ).matches
            hits = []
            for match in found:
                score = float(match.score)
                distance = math.sqrt(max(score, 0.0)) if metric == "euclidean" else 1.0 - score
                document, meta = self._split(match.metadata)
                hits.append(common.hit(metric, distance, match.id, document, meta))
            return hits

        return await self._run(search)

    async def count(self, collection: str, *, where: FilterInput = None) -> int:
        node = common.where_of(where)

        def count(index: Any) -> int:
            entry = self._entry(index, collection)
            if node is None:
                return self._info(index, collection, entry).count
            found = len(self._matching_ids(index, collection, node))
            if found >= MAX_TOP_K:
                raise ValidationError(
                    f"the pinecone store cannot count more than {MAX_TOP_K} filtered records",
                    errors=[
                        {
                            "loc": ["filter"],
                            "msg": "too many matches to count",
                            "type": "filter.unsupported",
                        }
                    ],
                )
            return found

        return await self._run(count)

    async def aclose(self) -> None:
        index, self._index = self._index, None
        if index is not None and hasattr(index, "close"):
            await anyio.to_thread.run_sync(index.close)
