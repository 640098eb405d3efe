"""The RAG pipeline: idempotent indexing with honest failure reports, search, retrieval within
a token budget, prompts, and conversation memory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from somaagent.errors import NotFoundError, ValidationError, VectorStoreError
from somaagent.memory.chunking import Chunker
from somaagent.memory.conversations import ConversationMemory
from somaagent.memory.documents import Document, IndexProgress
from somaagent.memory.hybrid import SearchOptions
from somaagent.memory.keyword import KeywordIndex
from somaagent.memory.rag import RAGPipeline
from somaagent.memory.stores import create_store
from tests.memory.rag_fakes import ExactStore, FaultyStore, HashEmbedder

pytestmark = pytest.mark.anyio

INSTALL = """# Install

SomaAgent installs with pip. Run pip install somaagent to get the SDK and the CLI.

## Server

The server extra adds FastAPI and the embedded vector store. Start it with soma serve.
"""
SEARCH = """# Search

Hybrid search fuses BM25 keyword ranking with vector similarity by reciprocal rank.
Filters use one language on every back-end.
"""
BILLING = """# Billing

Invoices are sent monthly. Refunds take five business days.
"""


def words(text: str) -> int:
    return len(text.split())


@pytest.fixture(params=["exact", "chroma"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FaultyStore]:
    """The exact reference store, and the default back-end (embedded Chroma) when installed."""
    if request.param == "exact":
        yield FaultyStore(ExactStore())
        return
    pytest.importorskip("chromadb")
    inner = create_store("chroma://" + str(tmp_path / "vectors"))
    yield FaultyStore(inner)
    await inner.aclose()


@pytest.fixture
async def pipeline(store: FaultyStore, tmp_path: Path) -> RAGPipeline:
    chunker = Chunker(chunk_size=24, overlap=4, count_tokens=words)
    rag = RAGPipeline(
        HashEmbedder(), store, KeywordIndex(tmp_path / "kw"), chunker=chunker, count_tokens=words
    )
    await rag.create_collection("docs")
    return rag


def docs() -> list[Document]:
    return [
        Document("install.md", INSTALL, source="guide/install.md", metadata={"topic": "setup"}),
        Document("search.md", SEARCH, source="guide/search.md", metadata={"topic": "search"}),
        Document("billing.md", BILLING, source="billing.md", metadata={"topic": "money"}),
    ]


async def counts(rag: RAGPipeline, collection: str = "docs") -> tuple[int, int]:
    return await rag.store.count(collection), rag.keyword.count(collection)


async def test_index_search_retrieve_and_prompt(pipeline: RAGPipeline) -> None:
    progress: list[IndexProgress] = []
    report = await pipeline.index_documents(
        "docs", docs(), batch_size=2, on_progress=progress.append
    )
    assert report.error is None and report.failed == []
    assert [d.id for d in report.indexed] == ["install.md", "search.md", "billing.md"]
    assert [p.documents_done for p in progress] == [2, 3]
    assert progress[-1].chunks_done == report.chunk_count == (await counts(pipeline))[0]

    hits = await pipeline.search("docs", "how do I start the server", k=3)
    assert hits[0].metadata["document_id"] == "install.md"
    assert hits[0].metadata["headings"] == "Install > Server"
    assert hits[0].metadata["source"] == "guide/install.md" and hits[0].metadata["topic"] == "setup"

    context = await pipeline.retrieve_context("reciprocal rank fusion", "docs", k=2)
    assert context.chunks[0].document_id == "search.md"
    assert context.sources[0].source == "guide/search.md" and context.sources[0].number == 1
    assert context.context.startswith("[1] guide/search.md › Search\n")
    assert context.token_count == words(context.context) <= context.token_budget == 4000
    assert not context.truncated

    prompt = pipeline.augment_prompt("What does hybrid search fuse?", context)
    assert "What does hybrid search fuse?" in prompt
    assert "[1] guide/search.md" in prompt and "BM25 keyword ranking" in prompt


async def test_reindexing_replaces_and_never_duplicates(
    pipeline: RAGPipeline, store: FaultyStore
) -> None:
    first = await pipeline.index_documents("docs", docs())
    before = await counts(pipeline)
    store.upserted = 0
    again = await pipeline.index_documents("docs", docs())
    assert [d.chunk_count for d in again.indexed] == [d.chunk_count for d in first.indexed]
    assert await counts(pipeline) == before
    assert store.upserted == 0  # unchanged chunks are not written again
    # An edit at the end rewrites only the chunks that changed.
    edited = Document(
        "install.md",
        INSTALL + "\nUpgrade with pip install -U.",
        source="guide/install.md",
        metadata={"topic": "setup"},
    )
    await pipeline.index_documents("docs", [edited])
    assert 0 < store.upserted < first.indexed[0].chunk_count + 1
    # A shorter new version: its leftover chunks go, from both indexes.
    short = Document("install.md", "# Install\n\nJust pip.", source="guide/install.md")
    await pipeline.index_documents("docs", [short])
    mine = {"document_id": "install.md"}
    assert await pipeline.store.count("docs", where=mine) == 1
    assert pipeline.keyword.count("docs", where=mine) == 1
    assert pipeline.keyword.search("docs", "FastAPI") == []


async def test_invalid_documents_write_nothing(pipeline: RAGPipeline) -> None:
    bad = [
        *docs(),
        Document("empty.md", "  \n "),
        Document("install.md", "dup"),
        Document("meta.md", "text", metadata={"chunk_index": 3}),
        Document("bin.md", "a\x00b"),
    ]
    with pytest.raises(ValidationError, match="nothing was indexed") as caught:
        await pipeline.index_documents("docs", bad)
    locs = [e["loc"] for e in caught.value.errors]
    assert locs == [
        ["documents", 3, "text"],
        ["documents", 4, "id"],
        ["documents", 5, "metadata"],
        ["documents", 6, "text"],
    ]
    assert await counts(pipeline) == (0, 0)
    with pytest.raises(ValidationError, match="no documents"):
        await pipeline.index_documents("docs", [])
    with pytest.raises(NotFoundError):
        await pipeline.index_documents("nowhere", docs())


async def test_a_failed_embedding_keeps_the_previous_version(pipeline: RAGPipeline) -> None:
    await pipeline.index_documents("docs", docs())
    before = await counts(pipeline)
    poisoned = [
        Document("search.md", SEARCH + "\n\nPOISON"),
        Document("new.md", "# New\n\nA fresh page about webhooks."),
    ]
    report = await pipeline.index_documents("docs", poisoned)
    assert [d.id for d in report.indexed] == ["new.md"]
    assert [(f.id, f.state) for f in report.failed] == [("search.md", "unchanged")]
    assert "cannot embed" in report.failed[0].error
    hits = await pipeline.search("docs", "reciprocal rank fusion", k=1)
    assert hits[0].metadata["document_id"] == "search.md"  # the old version is still there
    assert (await counts(pipeline))[0] == before[0] + 1


async def test_a_store_that_dies_mid_write_leaves_no_half_document(
    pipeline: RAGPipeline, store: FaultyStore
) -> None:
    store.upsert_partially = True
    report = await pipeline.index_documents("docs", docs(), batch_size=1)
    assert report.indexed == []
    assert [(f.id, f.state) for f in report.failed] == [
        ("install.md", "removed"),
        ("search.md", "unchanged"),
        ("billing.md", "unchanged"),
    ]
    assert "not attempted" in report.failed[1].error
    assert isinstance(report.error, VectorStoreError)
    assert await counts(pipeline) == (0, 0)


async def test_a_store_that_is_down_is_reported(pipeline: RAGPipeline, store: FaultyStore) -> None:
    await pipeline.index_documents("docs", docs()[:1])
    store.failing = {"upsert", "delete"}
    report = await pipeline.index_documents("docs", docs()[1:])
    assert [f.state for f in report.failed] == ["unknown", "unknown"]
    store.failing = {"*"}
    with pytest.raises(VectorStoreError, match="down"):
        await pipeline.search("docs", "pip", options=SearchOptions(mode="vector"))
    # The keyword side alone does not need the vector store.
    hits = await pipeline.search("docs", "pip install", options=SearchOptions(mode="keyword"))
    assert hits[0].metadata["document_id"] == "install.md"


async def test_search_modes_and_filters(pipeline: RAGPipeline) -> None:
    await pipeline.index_documents("docs", docs())
    for mode in ("vector", "keyword", "hybrid"):
        options = SearchOptions(mode=mode)
        hits = await pipeline.search("docs", "refunds invoices", k=2, options=options)
        assert hits[0].metadata["document_id"] == "billing.md", mode
        assert all(0.0 <= h.score <= 1.0 for h in hits)
    filtered = await pipeline.search("docs", "refunds invoices", k=5, where={"topic": "setup"})
    assert {h.metadata["topic"] for h in filtered} == {"setup"}
    weighted = await pipeline.search(
        "docs", "pip", options=SearchOptions(fusion="weighted", alpha=0.3)
    )
    assert weighted[0].keyword_score is not None
    with pytest.raises(ValidationError, match="invalid filter"):
        await pipeline.search("docs", "pip", where={"topic": {"like": "s%"}})
    with pytest.raises(ValidationError, match="k must"):
        await pipeline.search("docs", "pip", k=0)


async def test_context_respects_the_token_budget(pipeline: RAGPipeline) -> None:
    await pipeline.index_documents("docs", docs())
    full = await pipeline.retrieve_context("pip server search billing", "docs", k=6)
    small = await pipeline.retrieve_context("pip server search billing", "docs", 6, None, 40)
    assert small.truncated and small.token_count <= 40 < full.token_count
    assert len(small.chunks) < len(full.chunks)
    assert {s.document_id for s in small.sources} == {c.document_id for c in small.chunks}
    # Even the best chunk alone is over a tiny budget: it is cut to fit, at a word.
    tiny = await pipeline.retrieve_context("invoices monthly refunds", "docs", 1, None, 10)
    assert tiny.truncated and len(tiny.chunks) == 1 and tiny.token_count <= 10
    assert tiny.chunks[0].text == "# Billing\n\nInvoices are sent monthly."


async def test_conversation_memory_is_per_tenant(pipeline: RAGPipeline) -> None:
    memory = ConversationMemory(pipeline)
    await memory.index_message(
        "acme", message_id="m1", conversation_id="c1", role="user", content="Our VPN is down."
    )
    await memory.index_message(
        "acme", message_id="m2", conversation_id="c2", role="user", content="Reset the VPN token."
    )
    await memory.index_message(
        "globex", message_id="m3", conversation_id="c9", role="user", content="VPN works fine."
    )
    hits = await memory.search("acme", "vpn", k=5)
    assert {h.message_id for h in hits} == {"m1", "m2"}
    assert all(h.role == "user" and 0 <= h.score <= 1 for h in hits)
    only_c1 = await memory.search("acme", "vpn", conversation_id="c1")
    assert [h.message_id for h in only_c1] == ["m1"]
    assert await memory.search("initech", "vpn") == []
    assert await memory.forget_conversation("acme", "c1") == 1
    assert [h.message_id for h in await memory.search("acme", "vpn")] == ["m2"]
    await memory.index_message(
        "acme", message_id="m4", conversation_id="c2", role="assistant", content="   "
    )


async def test_collections_lifecycle(pipeline: RAGPipeline) -> None:
    await pipeline.index_documents("docs", docs())
    assert await pipeline.delete_document("docs", "billing.md") > 0
    assert pipeline.keyword.count("docs", where={"document_id": "billing.md"}) == 0
    await pipeline.delete_collection("docs")
    assert not pipeline.keyword.has_collection("docs")
    with pytest.raises(NotFoundError):
        await pipeline.search("docs", "pip")
    await pipeline.delete_collection("docs")  # again: nothing left to delete
