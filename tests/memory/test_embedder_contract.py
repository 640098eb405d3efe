"""The one contract suite every embedder passes: local MiniLM, OpenAI and Cohere (against their
local fakes), and each behind the persistent cache."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from somaagent.errors import EmbeddingError
from somaagent.memory.embeddings import CachedEmbedder, Embedder, create_embedder
from tests.fakes.memory_fixtures import MemoryFake

pytestmark = pytest.mark.anyio

KINDS = ["local", "openai", "cohere", "cached-local", "cached-cohere"]
TEXTS = [
    "The cat sat on the mat.",
    "Stock markets fell sharply today.",
    "A kitten is sleeping.",
    "Photosynthesis turns light into chemical energy.",
]


@pytest.fixture(params=KINDS)
async def embedder(
    request: pytest.FixtureRequest, tmp_path: Path, local_model_dir: Path, anyio_backend: str
) -> AsyncIterator[Embedder]:
    kind = str(request.param)
    inner_kind = kind.removeprefix("cached-")
    made: Embedder
    if inner_kind == "local":
        made = create_embedder("local", data_dir=local_model_dir)
    elif inner_kind == "openai":
        fake: MemoryFake = request.getfixturevalue("fake_openai_embeddings")
        made = create_embedder(
            "openai:text-embedding-3-small",
            api_key=fake.api_key,
            base_url=fake.base_url,
            dimensions=64,
            batch_size=3,
        )
    else:
        fake = request.getfixturevalue("fake_cohere")
        made = create_embedder(
            "cohere:embed-english-light-v3.0",
            api_key=fake.api_key,
            base_url=fake.base_url,
            batch_size=3,
        )
    if kind.startswith("cached-"):
        made = CachedEmbedder(made, path=tmp_path / "cache.sqlite3")
    async with made:
        yield made


async def test_shape_dtype_and_unit_rows(embedder: Embedder) -> None:
    vectors = await embedder.embed(TEXTS)
    assert vectors.shape == (len(TEXTS), embedder.dimension)
    assert vectors.dtype == np.float32 and vectors.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.name and embedder.provider


async def test_order_is_kept_and_batches_do_not_change_vectors(embedder: Embedder) -> None:
    together = await embedder.embed(TEXTS)
    # int8 dynamic quantisation scales activations per batch: a text's vector may move a
    # little with its neighbours (never below cosine 0.99); the others are batch-independent
    floor = 0.99 if "local" in repr(embedder) else 0.9999
    for index, text in enumerate(TEXTS):
        (alone,) = await embedder.embed([text])
        assert float(alone @ together[index]) > floor, text
    again = await embedder.embed(list(reversed(TEXTS)))
    assert (np.sum(again[::-1] * together, axis=1) > floor).all()


async def test_empty_batch(embedder: Embedder) -> None:
    assert (await embedder.embed([])).shape == (0, embedder.dimension)


async def test_queries_embed_too(embedder: Embedder) -> None:
    query = await embedder.embed(["where is the cat?"], input_type="query")
    assert query.shape == (1, embedder.dimension)
    assert np.isfinite(query).all()


async def test_non_text_items_are_named(embedder: Embedder) -> None:
    with pytest.raises(EmbeddingError) as caught:
        await embedder.embed(["fine", 42, "also fine"])  # type: ignore[list-item]
    assert caught.value.items == (1,)
