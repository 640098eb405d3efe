"""The one contract suite every vector store passes (ChromaDB, Qdrant, Pinecone, pgvector).

Expected answers come from exact NumPy search and from
:func:`somaagent.memory.filters.matches`, never from a back-end, so the back-ends agree with
each other by agreeing with the reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from somaagent.errors import ConflictError, NotFoundError, ValidationError
from somaagent.memory.filters import matches, parse_filter
from somaagent.memory.stores.base import Metric, VectorRecord, VectorStore
from tests.memory._stores import PINECONE_DIMENSION, PINECONE_METRIC

pytestmark = pytest.mark.anyio

DIM = PINECONE_DIMENSION


def metrics_for(store: VectorStore) -> list[Metric]:
    # a Pinecone index has one metric; collections are namespaces inside it
    every: list[Metric] = ["cosine", "dot", "euclidean"]
    return [PINECONE_METRIC] if store.backend == "pinecone" else every


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    normalised: np.ndarray = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return normalised


def exact(metric: Metric, vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    """SomaAgent's distance convention, computed directly."""
    distances: np.ndarray
    if metric == "cosine":
        norms = np.linalg.norm(vectors, axis=1) * np.linalg.norm(query)
        distances = 1.0 - (vectors @ query) / norms
    elif metric == "dot":
        distances = 1.0 - vectors @ query
    else:
        distances = np.linalg.norm(vectors - query, axis=1)
    return distances


TOPICS = ["bio", "chem", "phys", None]


def corpus(n: int = 48, seed: int = 7) -> list[VectorRecord]:
    rng = np.random.default_rng(seed)
    vectors = unit(rng, n)
    records = []
    for i in range(n):
        meta: dict[str, Any] = {"year": 1995 + (i * 7) % 30, "score": round((i % 10) / 10, 1)}
        topic = TOPICS[i % 4]
        if topic is not None:
            meta["topic"] = topic
        if i % 3:
            meta["draft"] = i % 3 == 1
        if i % 5 == 0:
            meta["tag"] = ["x", 1, True, 2.5][i % 4]
        records.append(
            VectorRecord(id=f"doc-{i}", vector=vectors[i], document=f"text {i}", metadata=meta)
        )
    return records


FILTERS: list[dict[str, Any]] = [
    {"topic": "bio"},
    {"topic": {"eq": "chem"}},
    {"topic": {"ne": "bio"}},
    {"year": {"gte": 2010}},
    {"year": {"gt": 2000, "lt": 2012}},
    {"score": {"lte": 0.3}},
    {"score": 1},  # 1 equals 1.0 ... (no record has 1.0: an empty answer is fine)
    {"score": {"eq": 0.5}},
    {"draft": True},
    {"draft": {"ne": True}},
    {"draft": 1},  # ... but True never equals 1
    {"topic": {"in": ["bio", "chem"]}},
    {"topic": {"nin": ["bio"]}},
    {"year": {"in": [1995, 2002, 2009]}},
    {"tag": {"in": ["x", 1, True]}},
    {"tag": {"nin": ["x", 2.5]}},
    {"or": [{"topic": "bio"}, {"year": {"lt": 2000}}]},
    {"and": [{"topic": {"ne": "bio"}}, {"draft": False}]},
    {"or": [{"and": [{"topic": "phys"}, {"score": {"gte": 0.5}}]}, {"draft": True}]},
    {"topic": "bio", "year": {"gte": 2005}},
    {"missing": {"ne": "anything"}},
    {"missing": "anything"},
]


def expected_ids(records: list[VectorRecord], raw: dict[str, Any]) -> set[str]:
    node = parse_filter(raw)
    return {r.id for r in records if matches(node, r.metadata)}


# -- collections -------------------------------------------------------------------------------


async def test_create_get_list_delete_collection(store: VectorStore) -> None:
    metric = metrics_for(store)[0]
    info = await store.create_collection(
        "alpha", dimension=DIM, metric=metric, metadata={"owner": "t1"}
    )
    assert (info.name, info.dimension, info.metric, info.count) == ("alpha", DIM, metric, 0)
    assert info.metadata == {"owner": "t1"}
    await store.create_collection("beta", dimension=DIM, metric=metric)
    names = [c.name for c in await store.list_collections()]
    assert names == ["alpha", "beta"]
    got = await store.get_collection("alpha")
    assert (got.dimension, got.metric, got.metadata) == (DIM, metric, {"owner": "t1"})
    await store.delete_collection("alpha")
    assert [c.name for c in await store.list_collections()] == ["beta"]
    with pytest.raises(NotFoundError):
        await store.get_collection("alpha")


async def test_create_existing_conflicts_unless_exist_ok_with_same_settings(
    store: VectorStore,
) -> None:
    metric = metrics_for(store)[0]
    await store.create_collection("gamma", dimension=DIM, metric=metric)
    with pytest.raises(ConflictError):
        await store.create_collection("gamma", dimension=DIM, metric=metric)
    again = await store.create_collection("gamma", dimension=DIM, metric=metric, exist_ok=True)
    assert again.dimension == DIM
    with pytest.raises((ConflictError, ValidationError)):
        await store.create_collection("gamma", dimension=DIM * 2, metric=metric, exist_ok=True)


async def test_unknown_collection_is_not_found_everywhere(store: VectorStore) -> None:
    record = VectorRecord(id="a", vector=[1.0] * DIM)
    calls = [
        store.get_collection("nope"),
        store.delete_collection("nope"),
        store.upsert("nope", [record]),
        store.get("nope", ["a"]),
        store.delete("nope", ids=["a"]),
        store.search("nope", [1.0] * DIM),
        store.count("nope"),
    ]
    for call in calls:
        with pytest.raises(NotFoundError, match="nope"):
            await call


@pytest.mark.parametrize(
    ("name", "dimension", "metric"),
    [
        ("x", DIM, "cosine"),
        ("bad name", DIM, "cosine"),
        ("-ab", DIM, "cosine"),
        ("okay", 0, "cosine"),
        ("okay", DIM, "hamming"),
    ],
)
async def test_bad_collection_settings_are_validation_errors(
    store: VectorStore, name: str, dimension: int, metric: Any
) -> None:
    with pytest.raises(ValidationError):
        await store.create_collection(name, dimension=dimension, metric=metric)


# -- records -----------------------------------------------------------------------------------


async def test_upsert_get_count_roundtrip(store: VectorStore) -> None:
    await store.create_collection("docs", dimension=DIM, metric=metrics_for(store)[0])
    records = corpus(12)
    await store.upsert("docs", records)
    assert await store.count("docs") == 12
    assert (await store.get_collection("docs")).count == 12
    got = await store.get("docs", ["doc-3", "missing", "doc-0"])
    assert [r.id for r in got] == ["doc-3", "doc-0"]
    original = {r.id: r for r in records}
    for record in got:
        source = original[record.id]
        assert record.document == source.document
        assert record.metadata == source.metadata  # numbers compare equal across int/float
        stored = np.asarray(record.vector, dtype=np.float32)
        # cosine stores may keep the normalised vector; these are unit vectors anyway
        np.testing.assert_allclose(stored, np.asarray(source.vector), atol=1e-5)
    assert await store.get("docs", []) == []


async def test_upsert_same_id_replaces_never_duplicates(store: VectorStore) -> None:
    await store.create_collection("docs", dimension=DIM, metric=metrics_for(store)[0])
    records = corpus(6)
    await store.upsert("docs", records)
    await store.upsert("docs", records)  # re-indexing the same documents
    assert await store.count("docs") == 6
    changed = VectorRecord(id="doc-2", vector=records[5].vector, document="new", metadata={"v": 2})
    await store.upsert("docs", [changed])
    assert await store.count("docs") == 6
    (got,) = await store.get("docs", ["doc-2"])
    assert (got.document, got.metadata) == ("new", {"v": 2})
    hits = await store.search("docs", np.asarray(records[5].vector), k=2)
    assert {h.id for h in hits} == {"doc-2", "doc-5"}


async def test_wrong_dimension_names_the_record_and_writes_nothing(store: VectorStore) -> None:
    await store.create_collection("docs", dimension=DIM, metric=metrics_for(store)[0])
    good = corpus(3)
    bad = VectorRecord(id="too-short", vector=[0.5] * (DIM - 1))
    with pytest.raises(ValidationError, match="too-short") as caught:
        await store.upsert("docs", [*good, bad])
    assert caught.value.errors[0]["loc"][:2] == ["records", 3]
    assert await store.count("docs") == 0
    with pytest.raises(ValidationError):
        await store.upsert("docs", [VectorRecord(id="nan", vector=[float("nan")] * DIM)])
    with pytest.raises(ValidationError, match="nested"):
        nested: Any = {"nested": {"a": 1}}
        await store.upsert("docs", [VectorRecord(id="m", vector=[1.0] * DIM, metadata=nested)])
    with pytest.raises(ValidationError):
        await store.search("docs", [1.0] * (DIM + 1))
    assert await store.count("docs") == 0


async def test_delete_by_ids_by_filter_and_both(store: VectorStore) -> None:
    await store.create_collection("docs", dimension=DIM, metric=metrics_for(store)[0])
    records = corpus(20)
    await store.upsert("docs", records)
    assert await store.delete("docs", ids=["doc-0", "doc-1", "nope"]) == 2
    assert await store.count("docs") == 18
    want = expected_ids(records[2:], {"topic": "bio"})
    assert await store.delete("docs", where={"topic": "bio"}) == len(want)
    assert await store.count("docs") == 18 - len(want)
    left = [r for r in records[2:] if r.id not in want]
    both = {r.id for r in left[:6] if r.metadata.get("topic") == "chem"}
    assert await store.delete("docs", ids=[r.id for r in left[:6]], where={"topic": "chem"}) == len(
        both
    )
    assert await store.delete("docs", ids=[]) == 0
    with pytest.raises(ValidationError):
        await store.delete("docs")


# -- search ------------------------------------------------------------------------------------


async def test_search_matches_exact_search_with_normalised_scores(store: VectorStore) -> None:
    rng = np.random.default_rng(3)
    for metric in metrics_for(store):
        name = f"m-{metric}"
        await store.create_collection(name, dimension=DIM, metric=metric)
        vectors = unit(rng, 60) * (
            rng.uniform(0.5, 2.0, size=(60, 1)) if metric == "euclidean" else 1
        )
        await store.upsert(
            name, [VectorRecord(id=f"v{i}", vector=v) for i, v in enumerate(vectors)]
        )
        query = unit(rng, 1)[0]
        distances = exact(metric, vectors, query)
        order = np.argsort(distances)[:10]
        hits = await store.search(name, query, k=10)
        assert [h.id for h in hits] == [f"v{i}" for i in order], metric
        for h, i in zip(hits, order, strict=True):
            assert h.metric == metric
            assert h.distance == pytest.approx(float(distances[i]), abs=2e-3)
            assert 0.0 <= h.score <= 1.0
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        top = hits[0]
        if metric == "euclidean":
            assert top.score == pytest.approx(1 / (1 + top.distance), abs=1e-6)
        else:  # unit vectors: cosine and dot both give (1 + cos) / 2
            cos = float(vectors[order[0]] @ query)
            assert top.score == pytest.approx((1 + cos) / 2, abs=2e-3)


async def test_search_k_and_empty_collection(store: VectorStore) -> None:
    await store.create_collection("docs", dimension=DIM, metric=metrics_for(store)[0])
    assert await store.search("docs", [1.0] * DIM, k=5) == []
    await store.upsert("docs", corpus(4))
    assert len(await store.search("docs", [1.0] * DIM, k=10)) == 4
    assert len(await store.search("docs", [1.0] * DIM, k=1)) == 1
    for k in (0, -1, 10**9):
        with pytest.raises(ValidationError):
            await store.search("docs", [1.0] * DIM, k=k)


# -- filters -----------------------------------------------------------------------------------


async def test_filters_mean_the_same_on_every_backend(store: VectorStore) -> None:
    await store.create_collection("docs", dimension=DIM, metric=metrics_for(store)[0])
    records = corpus()
    await store.upsert("docs", records)
    query = np.asarray(records[0].vector)
    for raw in FILTERS:
        want = expected_ids(records, raw)
        assert await store.count("docs", where=raw) == len(want), raw
        hits = await store.search("docs", query, k=len(records), where=raw)
        assert {h.id for h in hits} == want, raw
        for h in hits:
            assert matches(parse_filter(raw), h.metadata), (raw, h)


async def test_filtered_search_returns_the_nearest_matches(store: VectorStore) -> None:
    await store.create_collection("docs", dimension=DIM, metric=metrics_for(store)[0])
    records = corpus()
    await store.upsert("docs", records)
    query = np.asarray(records[5].vector)
    raw = {"year": {"gte": 2005}}
    allowed = [r for r in records if matches(parse_filter(raw), r.metadata)]
    vectors = np.stack([np.asarray(r.vector) for r in allowed])
    order = np.argsort(exact(metrics_for(store)[0], vectors, query))[:3]
    hits = await store.search("docs", query, k=3, where=raw)
    assert [h.id for h in hits] == [allowed[i].id for i in order]


@pytest.mark.parametrize(
    "raw",
    [
        {"year": {"gtx": 1}},
        {"year": {"gt": "2020"}},
        {"or": []},
        {"topic": {"in": []}},
        {"topic": {"eq": None}},
        {"topic": {"and": [{"a": 1}]}},
    ],
)
async def test_invalid_filters_are_validation_errors_naming_the_path(
    store: VectorStore, raw: dict[str, Any]
) -> None:
    await store.create_collection("docs", dimension=DIM, metric=metrics_for(store)[0])
    with pytest.raises(ValidationError) as caught:
        await store.search("docs", [1.0] * DIM, where=raw)
    assert caught.value.errors[0]["loc"][0] == "filter"
    with pytest.raises(ValidationError):
        await store.count("docs", where=raw)
    with pytest.raises(ValidationError):
        await store.delete("docs", where=raw)
