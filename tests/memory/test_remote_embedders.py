"""OpenAI and Cohere embedders against their local fakes: wire format, batching, retries, typed
errors, and failed items pinned by index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from somaagent.errors import (
    ConfigurationError,
    EmbeddingError,
    ProviderAuthenticationError,
    ProviderError,
)
from somaagent.memory.embeddings import CachedEmbedder, create_embedder
from somaagent.memory.embeddings.cohere import CohereEmbedder
from somaagent.memory.embeddings.openai import OpenAIEmbedder
from tests.fakes.memory_fixtures import MemoryFake
from tests.fakes.openai_embeddings import fake_vector

pytestmark = pytest.mark.anyio


def openai(
    fake: MemoryFake, model: str = "text-embedding-3-small", **options: object
) -> OpenAIEmbedder:
    made = create_embedder(
        f"openai:{model}", api_key=fake.api_key, base_url=fake.base_url, **options
    )
    assert isinstance(made, OpenAIEmbedder)
    return made


async def test_openai_batches_of_100_by_default_and_decodes_base64(
    fake_openai_embeddings: MemoryFake,
) -> None:
    fake = fake_openai_embeddings.fake
    fake.requests.clear()
    texts = [f"text number {i}" for i in range(250)]
    async with openai(fake_openai_embeddings) as embedder:
        vectors = await embedder.embed(texts)
    assert embedder.dimension == 1536 and vectors.shape == (250, 1536)
    assert sorted(len(r["input"]) for r in fake.requests) == [50, 100, 100]
    assert all(r["encoding_format"] == "base64" for r in fake.requests)
    np.testing.assert_allclose(vectors[7], fake_vector("text number 7", 1536), atol=1e-6)


async def test_openai_dimensions_for_v3_models_only(fake_openai_embeddings: MemoryFake) -> None:
    async with openai(fake_openai_embeddings, "text-embedding-3-large", dimensions=256) as embedder:
        vectors = await embedder.embed(["hello"])
    assert embedder.dimension == 256 and vectors.shape == (1, 256)
    assert fake_openai_embeddings.fake.requests[-1]["dimensions"] == 256
    assert openai(fake_openai_embeddings, "text-embedding-ada-002").dimension == 1536
    with pytest.raises(ConfigurationError, match="dimensions"):
        openai(fake_openai_embeddings, "text-embedding-ada-002", dimensions=256)
    with pytest.raises(ConfigurationError, match="dimension="):
        openai(fake_openai_embeddings, "my-own-model")
    assert openai(fake_openai_embeddings, "my-own-model", dimension=768).dimension == 768


async def test_openai_retries_rate_limits_and_server_errors(
    fake_openai_embeddings: MemoryFake,
) -> None:
    fake = fake_openai_embeddings.fake
    fake.fail_next[:] = [429, 500]
    async with openai(fake_openai_embeddings, max_retries=2) as embedder:
        vectors = await embedder.embed(["retry me"])
    assert vectors.shape == (1, 1536) and not fake.fail_next
    fake.fail_next[:] = [503, 503, 503]
    async with openai(fake_openai_embeddings, max_retries=1) as embedder:
        with pytest.raises(ProviderError) as caught:
            await embedder.embed(["give up"])
    assert caught.value.retryable and caught.value.status_code == 503
    fake.fail_next.clear()


async def test_openai_bad_key_is_an_authentication_error(
    fake_openai_embeddings: MemoryFake,
) -> None:
    embedder = create_embedder(
        "openai:text-embedding-3-small",
        api_key="sk-wrong",
        base_url=fake_openai_embeddings.base_url,
    )
    with pytest.raises(ProviderAuthenticationError):
        await embedder.embed(["x"])


async def test_openai_rejected_items_are_pinned_by_index(
    fake_openai_embeddings: MemoryFake,
) -> None:
    texts = [f"fine {i}" for i in range(10)]
    texts[3] = "too long [[reject]]"
    texts[8] = "also [[reject]]"
    async with openai(fake_openai_embeddings, max_retries=0) as embedder:
        with pytest.raises(EmbeddingError) as caught:
            await embedder.embed(texts)
        assert caught.value.items == (3, 8)
        assert caught.value.status_code == 400
        with pytest.raises(EmbeddingError) as empty:
            await embedder.embed(["ok", ""])
        assert empty.value.items == (1,)


def test_missing_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("CO_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        create_embedder("openai:text-embedding-3-small")
    with pytest.raises(ConfigurationError, match="CO_API_KEY"):
        create_embedder("cohere")
    with pytest.raises(ConfigurationError, match="unknown embedding provider"):
        create_embedder("mystery:model")


async def test_the_openai_fake_speaks_what_the_official_sdk_reads(
    fake_openai_embeddings: MemoryFake,
) -> None:
    openai_sdk = pytest.importorskip("openai")
    client = openai_sdk.AsyncOpenAI(
        api_key=fake_openai_embeddings.api_key, base_url=fake_openai_embeddings.base_url
    )
    try:
        answer = await client.embeddings.create(
            model="text-embedding-3-small", input=["a", "b"], dimensions=32
        )
    finally:
        await client.close()
    assert [item.index for item in answer.data] == [0, 1]
    assert len(answer.data[0].embedding) == 32
    ours = await openai(fake_openai_embeddings, dimensions=32).embed(["a", "b"])
    np.testing.assert_allclose(np.asarray(answer.data[1].embedding), ours[1], atol=1e-6)


async def test_cohere_sends_input_type_and_batches_of_96(fake_cohere: MemoryFake) -> None:
    fake = fake_cohere.fake
    fake.requests.clear()
    embedder = create_embedder(
        "cohere:embed-english-v3.0", api_key=fake_cohere.api_key, base_url=fake_cohere.base_url
    )
    assert isinstance(embedder, CohereEmbedder) and embedder.dimension == 1024
    documents = await embedder.embed([f"doc {i}" for i in range(200)])
    query = await embedder.embed(["doc 0"], input_type="query")
    assert documents.shape == (200, 1024)
    # Batches go out concurrently, so they may reach the vendor in any order; rows come back in
    # input order all the same.
    assert sorted(len(r["texts"]) for r in fake.requests[:3]) == [8, 96, 96]
    assert sorted(t for r in fake.requests[:3] for t in r["texts"]) == sorted(
        f"doc {i}" for i in range(200)
    )
    assert fake.requests[3]["texts"] == ["doc 0"]
    assert [r["input_type"] for r in fake.requests] == ["search_document"] * 3 + ["search_query"]
    alone = await embedder.embed(["doc 150", "doc 199"])
    np.testing.assert_allclose(alone, documents[[150, 199]], atol=1e-6)
    assert float(query[0] @ documents[0]) < 0.9  # v3 embeds queries and documents differently
    fake.fail_next[:] = [429]
    assert (await embedder.embed(["after a 429"])).shape == (1, 1024)
    with pytest.raises(EmbeddingError) as caught:
        await embedder.embed(["ok", "bad [[reject]]", "ok too"])
    assert caught.value.items == (1,)
    with pytest.raises(ConfigurationError, match="dimension="):
        create_embedder("cohere:embed-unknown", api_key="k")


async def test_cache_serves_repeats_and_keys_by_input_type(
    fake_cohere: MemoryFake, tmp_path: Path
) -> None:
    fake = fake_cohere.fake
    inner = create_embedder(
        "cohere:embed-english-light-v3.0",
        api_key=fake_cohere.api_key,
        base_url=fake_cohere.base_url,
    )
    path = tmp_path / "cache.sqlite3"
    async with CachedEmbedder(inner, path=path) as cached:
        first = await cached.embed(["alpha", "beta", "alpha"])
        assert (cached.hits, cached.misses) == (0, 2)
        fake.requests.clear()
        again = await cached.embed(["beta", "alpha"])
        assert fake.requests == [] and cached.hits == 2
        np.testing.assert_array_equal(again, first[[1, 0]])
        query = await cached.embed(["alpha"], input_type="query")
        assert len(fake.requests) == 1 and float(query[0] @ first[0]) < 0.9
    # persistent: a new wrapper over the same file needs no request
    fake.requests.clear()
    async with CachedEmbedder(
        create_embedder(
            "cohere:embed-english-light-v3.0",
            api_key=fake_cohere.api_key,
            base_url=fake_cohere.base_url,
        ),
        path=path,
    ) as reopened:
        np.testing.assert_array_equal(await reopened.embed(["alpha"]), first[:1])
    assert fake.requests == []


async def test_cache_names_the_callers_items_on_failure(
    fake_cohere: MemoryFake, tmp_path: Path
) -> None:
    inner = create_embedder(
        "cohere:embed-english-light-v3.0",
        api_key=fake_cohere.api_key,
        base_url=fake_cohere.base_url,
    )
    async with CachedEmbedder(inner, path=tmp_path / "c.sqlite3") as cached:
        await cached.embed(["cached one"])
        with pytest.raises(EmbeddingError) as caught:
            await cached.embed(["cached one", "x [[reject]]", "new", "x [[reject]]"])
    assert caught.value.items == (1, 3)
