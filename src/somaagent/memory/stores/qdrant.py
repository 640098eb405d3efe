"""Qdrant through ``qdrant-client``: local mode (``qdrant::memory:``, ``qdrant:///path``) or a
server (``qdrant+http://host:6333``).

Qdrant point ids must be integers or UUIDs, so a record's id is stored in the payload and the
point id is its UUIDv5; the payload is ``{"id", "document", "metadata": {...}}`` and filters
address ``metadata.<field>``. Field names containing ``.``, ``[``, ``]`` or ``"`` would be read
as Qdrant paths, so filtering on them is refused with a ValidationError. Filters translate to
Qdrant's ``must`` / ``should`` / ``must_not``: string and boolean equality by ``MatchValue``,
numeric equality by a closed ``Range`` (so ``1`` matches ``1.0`` but never ``True``), and
``ne`` / ``nin`` by ``must_not`` (records without the field pass, as in the reference).
Qdrant's cosine collections store vectors normalised; ``get`` returns them as stored. The client
blocks, so calls run in worker threads (one at a time in local mode, whose state is plain
Python objects).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final, TypeVar

import anyio
import anyio.to_thread

from somaagent.errors import SomaAgentError, ValidationError, VectorStoreError
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

__all__ = ["QdrantStore", "to_qdrant_filter"]

T = TypeVar("T")
_NAMESPACE: Final = uuid.UUID("6f1c2a52-5b7e-4c1e-9a53-3d8f0a9e2b11")
_BATCH: Final = 256
_BAD_FIELD_CHARS: Final = frozenset('.[]"')


def point_id(record_id: str) -> str:
    """The UUID Qdrant stores for a record id (deterministic, so re-upserts replace)."""
    return str(uuid.uuid5(_NAMESPACE, record_id))


def _models() -> Any:
    try:
        from qdrant_client import models
    except ImportError:
        raise missing_extra("Qdrant", "qdrant-client", "qdrant") from None
    return models


def _eq(m: Any, key: str, value: MetadataValue) -> Any:
    if isinstance(value, bool | str):
        return m.FieldCondition(key=key, match=m.MatchValue(value=value))
    return m.FieldCondition(key=key, range=m.Range(gte=value, lte=value))


def _condition(m: Any, node: Condition) -> Any:
    if _BAD_FIELD_CHARS & set(node.field):
        raise ValidationError(
            f"the qdrant store cannot filter on field {node.field!r}: Qdrant reads '.', '[', "
            "']' and '\"' in a key as a path",
            errors=[
                {
                    "loc": ["filter", node.field],
                    "msg": "unsupported field name",
                    "type": "filter.unsupported",
                }
            ],
        )
    key = f"metadata.{node.field}"
    if node.op in ("gt", "gte", "lt", "lte"):
        return m.FieldCondition(key=key, range=m.Range(**{node.op: node.value}))
    if node.op in ("eq", "ne"):
        condition = _eq(m, key, node.value)  # type: ignore[arg-type]
        return condition if node.op == "eq" else m.Filter(must_not=[condition])
    assert isinstance(node.value, tuple)
    strings = [v for v in node.value if isinstance(v, str)]
    others = [_eq(m, key, v) for v in node.value if not isinstance(v, str)]
    if strings:
        others.append(m.FieldCondition(key=key, match=m.MatchAny(any=strings)))
    any_of = m.Filter(should=others)
    return any_of if node.op == "in" else m.Filter(must_not=[any_of])


def to_qdrant_filter(node: Filter) -> Any:
    """Translate a parsed filter into a ``qdrant_client.models.Filter``."""
    m = _models()

    def walk(item: Filter) -> Any:
        if isinstance(item, And):
            return m.Filter(must=[walk(clause) for clause in item.clauses])
        if isinstance(item, Or):
            return m.Filter(should=[walk(clause) for clause in item.clauses])
        return _condition(m, item)

    top = walk(node)
    return top if isinstance(top, m.Filter) else m.Filter(must=[top])


class QdrantStore(VectorStore):
    """Qdrant (see the module docstring).

    Args:
        path: a local-mode folder, or ``None`` with ``url`` ``None`` for in-memory local mode.
        url: a Qdrant server's URL.
        api_key: the server's API key.
        hnsw_ef: HNSW ``ef`` at query time (servers; local mode searches exactly).
        timeout: seconds per server request.
    """

    backend = "qdrant"

    def __init__(
        self,
        *,
        path: str | None = None,
        url: str | None = None,
        api_key: str | None = None,
        hnsw_ef: int = 128,
        timeout: float = 30.0,
    ) -> None:
        self.path, self.url, self.api_key = path, url, api_key
        self.hnsw_ef = hnsw_ef
        self.timeout = timeout
        self._client: Any = None
        self._limiter = anyio.CapacityLimiter(8 if url else 1)

    def _connect(self) -> Any:
        if self._client is None:
            try:
                from qdrant_client import QdrantClient
            except ImportError:
                raise missing_extra("Qdrant", "qdrant-client", "qdrant") from None
            if self.url:
                # no background version probe: its thread would raise on its own when the
                # server is down; our calls report that as a VectorStoreError instead
                self._client = QdrantClient(
                    url=self.url,
                    api_key=self.api_key,
                    timeout=max(1, int(self.timeout)),
                    check_compatibility=False,
                )
            elif self.path:
                self._client = QdrantClient(path=self.path)
            else:
                self._client = QdrantClient(location=":memory:")
        return self._client

    @contextlib.contextmanager
    def _mapped(self, name: str) -> Iterator[None]:
        try:
            yield
        except SomaAgentError:
            raise
        except Exception as exc:
            text = str(exc)
            status = getattr(exc, "status_code", None)
            if status == 404 or "not found" in text.lower() or "doesn't exist" in text:
                raise common.not_found(name) from None
            if status == 409 or "already exists" in text:
                raise common.conflict(name) from None
            raise VectorStoreError(
                f"qdrant failed: {type(exc).__name__}: {text[:300]}", backend=self.backend
            ) from exc

    async def _run(self, name: str, work: Callable[[Any], T]) -> T:
        def call() -> T:
            with self._mapped(name):
                return work(self._connect())

        return await anyio.to_thread.run_sync(call, limiter=self._limiter)

    def _info(self, client: Any, name: str, *, count: bool = True) -> CollectionInfo:
        """The collection's settings; its exact count only when asked (it scans)."""
        common.check_name(name)
        described = client.get_collection(name)
        params = described.config.params.vectors
        metric = {"Cosine": "cosine", "Dot": "dot", "Euclid": "euclidean"}.get(
            str(getattr(params.distance, "value", params.distance)), "cosine"
        )
        total = client.count(name, exact=True).count if count else -1
        return CollectionInfo(
            name=name,
            dimension=int(params.size),
            metric=metric,  # type: ignore[arg-type]
            count=int(total),
            metadata=dict(described.config.metadata or {}),
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
        m = _models()
        distance = {
            "cosine": m.Distance.COSINE,
            "dot": m.Distance.DOT,
            "euclidean": m.Distance.EUCLID,
        }[metric]

        def create(client: Any) -> CollectionInfo:
            if client.collection_exists(name):
                info = self._info(client, name)
                if not exist_ok:
                    raise common.conflict(name)
                if (info.dimension, info.metric) != (dimension, metric):
                    raise common.conflict(name, info, f"{dimension} and {metric!r}")
                return info
            client.create_collection(
                name,
                vectors_config=m.VectorParams(size=dimension, distance=distance),
                metadata=user or None,
            )
            return self._info(client, name)

        return await self._run(name, create)

    async def delete_collection(self, name: str) -> None:
        def delete(client: Any) -> None:
            self._info(client, name, count=False)
            client.delete_collection(name)

        await self._run(name, delete)

    async def list_collections(self) -> list[CollectionInfo]:
        def listing(client: Any) -> list[CollectionInfo]:
            names = sorted(c.name for c in client.get_collections().collections)
            return [
                self._info(client, name) for name in names if common.COLLECTION_NAME.match(name)
            ]

        return await self._run("", listing)

    async def get_collection(self, name: str) -> CollectionInfo:
        return await self._run(name, lambda client: self._info(client, name))

    async def upsert(self, collection: str, records: Sequence[VectorRecord]) -> None:
        m = _models()

        def upsert(client: Any) -> None:
            info = self._info(client, collection, count=False)
            ids, rows, metadata = common.check_records(records, info.dimension)
            points = [
                m.PointStruct(
                    id=point_id(rid),
                    vector=rows[i].tolist(),
                    payload={"id": rid, "document": records[i].document, "metadata": metadata[i]},
                )
                for i, rid in enumerate(ids)
            ]
            for start in range(0, len(points), _BATCH):
                client.upsert(collection, points=points[start : start + _BATCH], wait=True)

        await self._run(collection, upsert)

    @staticmethod
    def _record(point: Any) -> VectorRecord:
        payload = point.payload or {}
        return VectorRecord(
            id=payload.get("id", str(point.id)),
            vector=list(point.vector or []),
            document=payload.get("document"),
            metadata=dict(payload.get("metadata") or {}),
        )

    async def get(self, collection: str, ids: Sequence[str]) -> list[VectorRecord]:
        def get(client: Any) -> list[VectorRecord]:
            self._info(client, collection, count=False)
            if not ids:
                return []
            points = client.retrieve(
                collection,
                ids=[point_id(rid) for rid in dict.fromkeys(ids)],
                with_payload=True,
                with_vectors=True,
            )
            by_id = {record.id: record for record in map(self._record, points)}
            return [by_id[rid] for rid in ids if rid in by_id]

        return await self._run(collection, get)

    def _selection(self, ids: Sequence[str] | None, node: Filter | None) -> Any:
        m = _models()
        must: list[Any] = []
        if ids is not None:
            must.append(m.HasIdCondition(has_id=[point_id(rid) for rid in ids]))
        if node is not None:
            must.append(to_qdrant_filter(node))
        return m.Filter(must=must) if must else None

    async def delete(
        self,
        collection: str,
        *,
        ids: Sequence[str] | None = None,
        where: FilterInput = None,
    ) -> int:
        node = common.where_of(where)
        common.require_selection(ids, node)
        selection = self._selection(ids, node)
        m = _models()

        def delete(client: Any) -> int:
            self._info(client, collection, count=False)
            if ids is not None and not ids:
                return 0
            matched: list[Any] = []
            offset = None
            while True:
                points, offset = client.scroll(
                    collection,
                    scroll_filter=selection,
                    limit=1000,
                    offset=offset,
                    with_payload=False,
                    with_vectors=False,
                )
                matched.extend(point.id for point in points)
                if offset is None:
                    break
            if matched:
                client.delete(collection, points_selector=m.PointIdsList(points=matched), wait=True)
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
        query_filter = to_qdrant_filter(node) if node is not None else None
        m = _models()

        def search(client: Any) -> list[SearchHit]:
            info = self._info(client, collection, count=False)
            query = common.check_query(vector, info.dimension)
            # local mode searches exactly and warns about search params it ignores
            params = m.SearchParams(hnsw_ef=max(self.hnsw_ef, k)) if self.url else None
            found = client.query_points(
                collection,
                query=query.tolist(),
                query_filter=query_filter,
                limit=k,
                with_payload=True,
                search_params=params,
            ).points
            hits = []
            for point in found:
                score = float(point.score)
                distance = score if info.metric == "euclidean" else 1.0 - score
                payload = point.payload or {}
                hits.append(
                    common.hit(
                        info.metric,
                        distance,
                        payload.get("id", str(point.id)),
                        payload.get("document"),
                        payload.get("metadata"),
                    )
                )
            return hits

        return await self._run(collection, search)

    async def count(self, collection: str, *, where: FilterInput = None) -> int:
        node = common.where_of(where)
        query_filter = to_qdrant_filter(node) if node is not None else None

        def count(client: Any) -> int:
            self._info(client, collection, count=False)
            return int(client.count(collection, count_filter=query_filter, exact=True).count)

        return await self._run(collection, count)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await anyio.to_thread.run_sync(client.close)
