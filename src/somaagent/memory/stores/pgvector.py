"""pgvector on PostgreSQL (``pgvector+postgresql://user@host/db``), over asyncpg.

Layout: a catalogue table ``soma_vector_collections`` (name, id, dimension, metric, metadata)
and one table per collection, ``soma_vectors_<id>`` (``id text`` primary key, ``embedding
vector(d)``, ``document``, ``metadata jsonb``), with an HNSW index in the metric's operator class
(up to 2,000 dimensions, pgvector's limit for indexes; wider collections are searched exactly)
and a GIN index on the metadata. Upserts are ``INSERT ... ON CONFLICT (id) DO UPDATE`` in one
transaction, so a failed batch writes nothing.

Filters become SQL on the ``jsonb`` metadata: equality is containment (``metadata @> {"f": v}``,
which compares numbers by value and keeps booleans apart, and uses the GIN index), ``ne`` /
``nin`` are its negation (records without the field pass), ranges apply only to JSON numbers.
pgvector's HNSW scan filters *after* the index (pgvector < 0.8 has no iterative scan), which
could return fewer than ``k`` matches, so a filtered search, or ``k`` above ``hnsw.ef_search``'s
limit, is an exact scan over the filtered rows instead. Distances: ``<=>`` (1 − cos), ``<#>``
(−a·b, reported as 1 − a·b) and ``<->`` (L2).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

import anyio

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

__all__ = ["PgVectorStore", "to_sql"]

CATALOGUE: Final = "soma_vector_collections"
MAX_INDEXED_DIMENSION: Final = 2000
MAX_EF_SEARCH: Final = 1000
_OPS: Final[dict[str, tuple[str, str]]] = {
    "cosine": ("<=>", "vector_cosine_ops"),
    "dot": ("<#>", "vector_ip_ops"),
    "euclidean": ("<->", "vector_l2_ops"),
}
_SETUP: Final = f"""
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE IF NOT EXISTS {CATALOGUE} (
    name text PRIMARY KEY,
    id bigserial UNIQUE,
    dimension integer NOT NULL,
    metric text NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{{}}'
);
"""


def to_sql(node: Filter, params: list[Any]) -> str:
    """Translate a parsed filter into a SQL condition on ``metadata``, appending to ``params``."""
    if isinstance(node, And | Or):
        joiner = " AND " if isinstance(node, And) else " OR "
        return "(" + joiner.join(to_sql(clause, params) for clause in node.clauses) + ")"
    return _condition(node, params)


def _contains(field: str, value: MetadataValue, params: list[Any]) -> str:
    params.append(json.dumps({field: value}))
    return f"metadata @> ${len(params)}::jsonb"


def _condition(node: Condition, params: list[Any]) -> str:
    if node.op in ("eq", "ne"):
        test = _contains(node.field, node.value, params)  # type: ignore[arg-type]
        return test if node.op == "eq" else f"NOT ({test})"
    if node.op in ("in", "nin"):
        assert isinstance(node.value, tuple)
        tests = " OR ".join(_contains(node.field, value, params) for value in node.value)
        return f"({tests})" if node.op == "in" else f"NOT ({tests})"
    params.append(node.field)
    field = len(params)
    params.append(float(node.value))  # type: ignore[arg-type]
    symbol = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[node.op]
    return (
        f"(CASE WHEN jsonb_typeof(metadata -> ${field}::text) = 'number' "
        f"THEN (metadata ->> ${field}::text)::float8 {symbol} ${len(params)} ELSE false END)"
    )


class PgVectorStore(VectorStore):
    """pgvector (see the module docstring).

    Args:
        dsn: a ``postgresql://`` connection string.
        pool_size: the most connections kept open.
        ef_search: HNSW ``ef_search`` for unfiltered searches (raised to ``k`` when larger).
        m: HNSW ``m`` for new collections.
        ef_construction: HNSW ``ef_construction`` for new collections.
        timeout: seconds to connect, and for each statement.
    """

    backend = "pgvector"

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 10,
        ef_search: int = 100,
        m: int = 16,
        ef_construction: int = 64,
        timeout: float = 30.0,
    ) -> None:
        self.dsn = dsn
        self.timeout = timeout
        self.pool_size = pool_size
        self.ef_search = ef_search
        self.m, self.ef_construction = m, ef_construction
        self._pool: Any = None
        self._lock = anyio.Lock()

    async def _open(self) -> Any:
        async with self._lock:
            if self._pool is None:
                try:
                    import asyncpg  # type: ignore[import-untyped]
                    from pgvector.asyncpg import register_vector
                except ImportError as exc:
                    raise missing_extra("pgvector", str(exc.name), "pgvector") from None
                setup = await asyncpg.connect(self.dsn, timeout=self.timeout)
                try:
                    await setup.execute(_SETUP)
                finally:
                    await setup.close()
                self._pool = await asyncpg.create_pool(
                    self.dsn,
                    min_size=1,
                    max_size=self.pool_size,
                    init=register_vector,
                    timeout=self.timeout,
                    command_timeout=self.timeout,
                )
            return self._pool

    @asynccontextmanager
    async def _connection(self, name: str = "") -> AsyncIterator[Any]:
        try:
            pool = await self._open()
            async with pool.acquire() as connection, connection.transaction():
                yield connection
        except SomaAgentError:
            raise
        except Exception as exc:
            if type(exc).__name__ == "UndefinedTableError" and name:
                raise common.not_found(name) from None
            raise VectorStoreError(
                f"pgvector failed: {type(exc).__name__}: {str(exc)[:300]}", backend=self.backend
            ) from exc

    @staticmethod
    async def _row(connection: Any, name: str) -> Any:
        common.check_name(name)
        row = await connection.fetchrow(
            f"SELECT id, dimension, metric, metadata FROM {CATALOGUE} WHERE name = $1", name
        )
        if row is None:
            raise common.not_found(name)
        return row

    @staticmethod
    async def _info(connection: Any, name: str, row: Any) -> CollectionInfo:
        count = await connection.fetchval(f"SELECT count(*) FROM soma_vectors_{row['id']}")
        return CollectionInfo(
            name=name,
            dimension=int(row["dimension"]),
            metric=row["metric"],
            count=int(count),
            metadata=json.loads(row["metadata"]),
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
        async with self._connection(name) as connection:
            row = await connection.fetchrow(
                f"INSERT INTO {CATALOGUE} (name, dimension, metric, metadata) "
                "VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT (name) DO NOTHING "
                "RETURNING id, dimension, metric, metadata",
                name,
                dimension,
                metric,
                json.dumps(user),
            )
            if row is None:
                existing = await self._row(connection, name)
                info = await self._info(connection, name, existing)
                if not exist_ok:
                    raise common.conflict(name)
                if (info.dimension, info.metric) != (dimension, metric):
                    raise common.conflict(name, info, f"{dimension} and {metric!r}")
                return info
            table = f"soma_vectors_{row['id']}"
            await connection.execute(
                f"CREATE TABLE {table} (id text PRIMARY KEY, embedding vector({dimension}) "
                "NOT NULL, document text, metadata jsonb NOT NULL DEFAULT '{}')"
            )
            if dimension <= MAX_INDEXED_DIMENSION:
                await connection.execute(
                    f"CREATE INDEX ON {table} USING hnsw (embedding {_OPS[metric][1]}) "
                    f"WITH (m = {int(self.m)}, ef_construction = {int(self.ef_construction)})"
                )
            await connection.execute(f"CREATE INDEX ON {table} USING gin (metadata jsonb_path_ops)")
            return await self._info(connection, name, row)

    async def delete_collection(self, name: str) -> None:
        async with self._connection(name) as connection:
            row = await self._row(connection, name)
            await connection.execute(f"DROP TABLE IF EXISTS soma_vectors_{row['id']}")
            await connection.execute(f"DELETE FROM {CATALOGUE} WHERE name = $1", name)

    async def list_collections(self) -> list[CollectionInfo]:
        async with self._connection() as connection:
            rows = await connection.fetch(
                f"SELECT name, id, dimension, metric, metadata FROM {CATALOGUE} ORDER BY name"
            )
            return [await self._info(connection, row["name"], row) for row in rows]

    async def get_collection(self, name: str) -> CollectionInfo:
        async with self._connection(name) as connection:
            return await self._info(connection, name, await self._row(connection, name))

    async def upsert(self, collection: str, records: Sequence[VectorRecord]) -> None:
        async with self._connection(collection) as connection:
            row = await self._row(connection, collection)
            ids, rows, metadata = common.check_records(records, int(row["dimension"]))
            if not ids:
                return
            await connection.executemany(
                f"INSERT INTO soma_vectors_{row['id']} (id, embedding, document, metadata) "
                "VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT (id) DO UPDATE SET "
                "embedding = EXCLUDED.embedding, document = EXCLUDED.document, "
                "metadata = EXCLUDED.metadata",
                [
                    (rid, rows[i], records[i].document, json.dumps(metadata[i]))
                    for i, rid in enumerate(ids)
                ],
            )

    async def get(self, collection: str, ids: Sequence[str]) -> list[VectorRecord]:
        async with self._connection(collection) as connection:
            row = await self._row(connection, collection)
            found = await connection.fetch(
                f"SELECT id, embedding, document, metadata FROM soma_vectors_{row['id']} "
                "WHERE id = ANY($1::text[])",
                list(ids),
            )
        by_id = {
            item["id"]: VectorRecord(
                id=item["id"],
                vector=_floats(item["embedding"]),
                document=item["document"],
                metadata=json.loads(item["metadata"]),
            )
            for item in found
        }
        return [by_id[rid] for rid in ids if rid in by_id]

    @staticmethod
    def _where(ids: Sequence[str] | None, node: Filter | None, params: list[Any]) -> str:
        parts = []
        if ids is not None:
            params.append(list(ids))
            parts.append(f"id = ANY(${len(params)}::text[])")
        if node is not None:
            parts.append(to_sql(node, params))
        return " WHERE " + " AND ".join(parts) if parts else ""

    async def delete(
        self,
        collection: str,
        *,
        ids: Sequence[str] | None = None,
        where: FilterInput = None,
    ) -> int:
        node = common.where_of(where)
        common.require_selection(ids, node)
        async with self._connection(collection) as connection:
            row = await self._row(connection, collection)
            params: list[Any] = []
            clause = self._where(ids, node, params)
            deleted = await connection.fetchval(
                f"WITH gone AS (DELETE FROM soma_vectors_{row['id']}{clause} RETURNING 1) "
                "SELECT count(*) FROM gone",
                *params,
            )
            return int(deleted)

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
        async with self._connection(collection) as connection:
            row = await self._row(connection, collection)
            metric: Metric = row["metric"]
            query = common.check_query(vector, int(row["dimension"]))
            if node is not None or k > MAX_EF_SEARCH:
                await connection.execute("SET LOCAL enable_indexscan = off")
            else:
                ef = min(MAX_EF_SEARCH, max(self.ef_search, k))
                await connection.execute(f"SET LOCAL hnsw.ef_search = {int(ef)}")
            operator = _OPS[metric][0]
            params: list[Any] = [query]
            clause = self._where(None, node, params)
            params.append(k)
            found = await connection.fetch(
                f"SELECT id, document, metadata, embedding {operator} $1 AS raw "
                f"FROM soma_vectors_{row['id']}{clause} "
                f"ORDER BY embedding {operator} $1 LIMIT ${len(params)}",
                *params,
            )
        hits = []
        for item in found:
            raw = float(item["raw"])
            distance = 1.0 + raw if metric == "dot" else raw
            hits.append(
                common.hit(
                    metric, distance, item["id"], item["document"], json.loads(item["metadata"])
                )
            )
        return hits

    async def count(self, collection: str, *, where: FilterInput = None) -> int:
        node = common.where_of(where)
        async with self._connection(collection) as connection:
            row = await self._row(connection, collection)
            params: list[Any] = []
            clause = self._where(None, node, params)
            total = await connection.fetchval(
                f"SELECT count(*) FROM soma_vectors_{row['id']}{clause}", *params
            )
            return int(total)

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()


def _floats(value: Any) -> list[float]:
    """A stored vector as floats (pgvector's codec gives a ``Vector`` or a NumPy array)."""
    if hasattr(value, "to_list"):
        return [float(x) for x in value.to_list()]
    return [float(x) for x in value]
