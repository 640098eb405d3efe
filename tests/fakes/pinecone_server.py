"""A local stand-in for one Pinecone index's data plane, speaking its REST wire format.

Routes (as the official ``pinecone`` SDK calls them, JSON in camelCase): ``POST /vectors/upsert``,
``POST /query``, ``GET /vectors/fetch``, ``POST /vectors/delete``, ``POST /describe_index_stats``
and ``GET /vectors/list``. Every route checks the ``Api-Key`` header. Metadata filters follow
Pinecone's documented operators (``$eq $ne $gt $gte $lt $lte $in $nin $exists $and $or``, a bare
value meaning ``$eq``); ``$ne`` and ``$nin`` here pass only records that *have* the field, the
stricter reading, so a client must add ``$exists: false`` itself to pass the others. Numbers come
back as floats, like Pinecone's. Query scores: cosine similarity, dot product, or squared
Euclidean distance (lower is closer), per the index's metric. Faults: set ``fail_next`` to a
status code to make the next request fail with Pinecone's error body.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

__all__ = ["FakePinecone"]

MAX_TOP_K = 10_000


def _error(status: int, message: str) -> JSONResponse:
    codes = {400: 3, 401: 16, 404: 5, 500: 13, 503: 14}
    return JSONResponse({"code": codes.get(status, 2), "message": message, "details": []}, status)


def _same(left: object, right: object) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left is right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return float(left) == float(right)
    if isinstance(left, list):  # a list of strings matches when any element does
        return any(_same(item, right) for item in left)
    return left == right


def _passes(metadata: dict[str, Any], where: dict[str, Any]) -> bool:
    for key, condition in where.items():
        if key == "$and":
            if not all(_passes(metadata, part) for part in condition):
                return False
        elif key == "$or":
            if not any(_passes(metadata, part) for part in condition):
                return False
        else:
            ops = condition if isinstance(condition, dict) else {"$eq": condition}
            if not all(_op(metadata, key, op, value) for op, value in ops.items()):
                return False
    return True


def _op(metadata: dict[str, Any], key: str, op: str, value: Any) -> bool:
    present = key in metadata
    if op == "$exists":
        return present is bool(value)
    if not present:
        return False
    stored = metadata[key]
    if op == "$eq":
        return _same(stored, value)
    if op == "$ne":
        return not _same(stored, value)
    if op == "$in":
        return any(_same(stored, item) for item in value)
    if op == "$nin":
        return not any(_same(stored, item) for item in value)
    if isinstance(stored, bool) or not isinstance(stored, int | float):
        return False
    number = float(value)
    return {
        "$gt": stored > number,
        "$gte": stored >= number,
        "$lt": stored < number,
        "$lte": stored <= number,
    }[op]


def _check_filter(where: Any) -> str | None:
    if not isinstance(where, dict) or not where:
        return "filter must be a non-empty object"
    allowed = {"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists"}
    for key, condition in where.items():
        if key in ("$and", "$or"):
            if not isinstance(condition, list) or not condition:
                return f"{key} takes a non-empty array"
            for part in condition:
                if problem := _check_filter(part):
                    return problem
        elif isinstance(condition, dict):
            for op, value in condition.items():
                if op not in allowed:
                    return f"unknown operator {op}"
                if op in ("$in", "$nin") and (
                    not isinstance(value, list) or any(isinstance(v, bool) for v in value)
                ):
                    return f"{op} takes an array of strings or numbers"
                if op in ("$gt", "$gte", "$lt", "$lte") and (
                    isinstance(value, bool) or not isinstance(value, int | float)
                ):
                    return f"{op} takes a number"
    return None


def _floats(metadata: dict[str, Any]) -> dict[str, Any]:
    return {
        key: float(value) if isinstance(value, int) and not isinstance(value, bool) else value
        for key, value in metadata.items()
    }


class FakePinecone:
    """One index's state (namespace → id → (values, metadata)) and its ASGI app."""

    def __init__(self, *, dimension: int = 8, metric: str = "cosine", api_key: str = "pclocal"):
        self.dimension = dimension
        self.metric = metric
        self.api_key = api_key
        self.namespaces: dict[str, dict[str, tuple[list[float], dict[str, Any]]]] = {}
        self.requests: list[tuple[str, str]] = []
        self.fail_next: int | None = None
        self.app = Starlette(
            routes=[
                Route("/vectors/upsert", self._guard(self.upsert), methods=["POST"]),
                Route("/query", self._guard(self.query), methods=["POST"]),
                Route("/vectors/fetch", self._guard(self.fetch), methods=["GET"]),
                Route("/vectors/delete", self._guard(self.delete), methods=["POST"]),
                Route("/vectors/list", self._guard(self.list), methods=["GET"]),
                Route("/describe_index_stats", self._guard(self.stats), methods=["POST", "GET"]),
            ]
        )

    def _guard(self, handler: Any) -> Any:
        async def endpoint(request: Request) -> JSONResponse:
            self.requests.append((request.method, request.url.path))
            if request.headers.get("api-key") != self.api_key:
                return _error(401, "Invalid API Key")
            if self.fail_next is not None:
                status, self.fail_next = self.fail_next, None
                return _error(status, "injected failure")
            body = await request.json() if request.method == "POST" else {}
            result: JSONResponse = await handler(request, body or {})
            return result

        return endpoint

    @staticmethod
    def _ns(name: str | None) -> str:
        return name or "__default__"

    async def upsert(self, request: Request, body: dict[str, Any]) -> JSONResponse:
        vectors = body.get("vectors") or []
        if len(vectors) > 1000:
            return _error(400, "Batch size exceeds 1000 vectors")
        for item in vectors:
            values = item.get("values") or []
            if len(values) != self.dimension:
                return _error(
                    400,
                    f"Vector dimension {len(values)} does not match the dimension of the index "
                    f"{self.dimension}",
                )
            if not any(values):
                return _error(400, "Dense vectors must contain at least one non-zero value")
        space = self.namespaces.setdefault(self._ns(body.get("namespace")), {})
        for item in vectors:
            space[item["id"]] = (
                [float(v) for v in item["values"]],
                _floats(item.get("metadata") or {}),
            )
        return JSONResponse({"upsertedCount": len(vectors)})

    def _score(self, stored: np.ndarray, query: np.ndarray) -> float:
        if self.metric == "cosine":
            return float(stored @ query / (np.linalg.norm(stored) * np.linalg.norm(query)))
        if self.metric == "dotproduct":
            return float(stored @ query)
        return float(((stored - query) ** 2).sum())

    async def query(self, request: Request, body: dict[str, Any]) -> JSONResponse:
        top_k = body.get("topK")
        if not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
            return _error(400, f"topK must be between 1 and {MAX_TOP_K}")
        vector = body.get("vector")
        if not isinstance(vector, list) or len(vector) != self.dimension:
            return _error(400, f"Query vector dimension does not match the index {self.dimension}")
        where = body.get("filter")
        if where is not None and (problem := _check_filter(where)):
            return _error(400, f"Invalid filter: {problem}")
        namespace = body.get("namespace") or ""
        space = self.namespaces.get(self._ns(namespace), {})
        query = np.asarray(vector, dtype=np.float64)
        scored = [
            (self._score(np.asarray(values), query), rid, values, meta)
            for rid, (values, meta) in space.items()
            if where is None or _passes(meta, where)
        ]
        scored.sort(key=lambda item: item[0], reverse=self.metric != "euclidean")
        matches = []
        for score, rid, values, meta in scored[:top_k]:
            match: dict[str, Any] = {"id": rid, "score": score, "values": []}
            if body.get("includeValues"):
                match["values"] = values
            if body.get("includeMetadata") and meta:
                match["metadata"] = meta
            matches.append(match)
        return JSONResponse({"matches": matches, "namespace": namespace, "usage": {"readUnits": 5}})

    async def fetch(self, request: Request, body: dict[str, Any]) -> JSONResponse:
        ids = request.query_params.getlist("ids")
        if not ids:
            return _error(400, "ids are required")
        namespace = request.query_params.get("namespace", "")
        space = self.namespaces.get(self._ns(namespace), {})
        vectors = {}
        for rid in ids:
            if rid in space:
                values, meta = space[rid]
                entry: dict[str, Any] = {"id": rid, "values": values}
                if meta:
                    entry["metadata"] = meta
                vectors[rid] = entry
        return JSONResponse({"vectors": vectors, "namespace": namespace, "usage": {"readUnits": 1}})

    async def delete(self, request: Request, body: dict[str, Any]) -> JSONResponse:
        name = self._ns(body.get("namespace"))
        space = self.namespaces.get(name, {})
        if body.get("deleteAll"):
            self.namespaces.pop(name, None)
        elif body.get("ids") is not None:
            for rid in body["ids"]:
                space.pop(rid, None)
        elif body.get("filter") is not None:
            # serverless indexes refuse deletes by filter; so does this stand-in
            return _error(
                400,
                "Serverless and Starter indexes do not support deleting with metadata filtering",
            )
        if name in self.namespaces and not self.namespaces[name]:
            del self.namespaces[name]
        return JSONResponse({})

    async def list(self, request: Request, body: dict[str, Any]) -> JSONResponse:
        namespace = request.query_params.get("namespace", "")
        prefix = request.query_params.get("prefix", "")
        limit = int(request.query_params.get("limit", "100"))
        start = int(request.query_params.get("paginationToken") or 0)
        ids = sorted(
            r for r in self.namespaces.get(self._ns(namespace), {}) if r.startswith(prefix)
        )
        page = ids[start : start + limit]
        answer: dict[str, Any] = {
            "vectors": [{"id": rid} for rid in page],
            "namespace": namespace,
            "usage": {"readUnits": 1},
        }
        if start + limit < len(ids):
            answer["pagination"] = {"next": str(start + limit)}
        return JSONResponse(answer)

    async def stats(self, request: Request, body: dict[str, Any]) -> JSONResponse:
        if body.get("filter") is not None:
            return _error(
                400,
                "Serverless and Starter indexes do not support describing index stats with "
                "metadata filtering",
            )
        namespaces = {
            name: {"vectorCount": len(space)} for name, space in self.namespaces.items() if space
        }
        total = sum(item["vectorCount"] for item in namespaces.values())
        return JSONResponse(
            {
                "namespaces": namespaces,
                "dimension": self.dimension,
                "indexFullness": 0.0,
                "totalVectorCount": total,
                "metric": self.metric,
                "vectorType": "dense",
            }
        )
