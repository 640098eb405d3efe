"""Pinecone indexes of each metric (one metric per index): scores and distances agree with the
exact computation, like every other back-end's."""

from __future__ import annotations

import numpy as np
import pytest

from somaagent.errors import ValidationError
from somaagent.memory.stores import Metric, VectorRecord, create_store
from tests.fakes._server import run_asgi
from tests.fakes.pinecone_server import FakePinecone
from tests.memory.test_store_contract import exact, unit

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(("native", "metric"), [("dotproduct", "dot"), ("euclidean", "euclidean")])
async def test_scores_follow_the_index_metric(native: str, metric: Metric) -> None:
    pytest.importorskip("pinecone")
    fake = FakePinecone(dimension=8, metric=native)
    rng = np.random.default_rng(11)
    vectors = unit(rng, 30) * rng.uniform(0.5, 1.5, size=(30, 1))
    query = unit(rng, 1)[0]
    with run_asgi(fake.app) as url:
        async with create_store(f"pinecone://?api_key={fake.api_key}&host={url}") as store:
            with pytest.raises(ValidationError, match="another index"):
                await store.create_collection("wrong", dimension=8, metric="cosine")
            await store.create_collection("docs", dimension=8, metric=metric)
            await store.upsert(
                "docs", [VectorRecord(id=f"v{i}", vector=v) for i, v in enumerate(vectors)]
            )
            hits = await store.search("docs", query, k=5)
    distances = exact(metric, vectors, query)
    order = np.argsort(distances)[:5]
    assert [h.id for h in hits] == [f"v{i}" for i in order]
    for hit, i in zip(hits, order, strict=True):
        assert hit.distance == pytest.approx(float(distances[i]), abs=1e-4)
        assert 0.0 <= hit.score <= 1.0 and hit.metric == metric
