"""The BM25 keyword index: ranking, persistence, idempotent ids, filters, deletes, faults."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from somaagent.errors import ConflictError, NotFoundError, ValidationError, VectorStoreError
from somaagent.memory.keyword import KeywordHit, KeywordIndex, KeywordRecord, query_terms

DOCS = [
    KeywordRecord(
        "bio#0",
        "Proteins fold into shapes that decide their function.",
        {"topic": "bio", "year": 2019},
    ),
    KeywordRecord(
        "bio#1",
        "Cells divide; dividing cells copy their DNA first.",
        {"topic": "bio", "year": 2021, "draft": True},
    ),
    KeywordRecord(
        "phys#0", "Quantum fields describe particles.", {"topic": "physics", "year": 2020}
    ),
    KeywordRecord(
        "cook#0",
        "Fold the egg whites gently into the batter.",
        {"topic": "cooking", "year": 1, "draft": 1},
    ),
]


@pytest.fixture
def index(tmp_path: Path) -> Iterator[KeywordIndex]:
    index = KeywordIndex(tmp_path / "keyword")
    index.create_collection("docs")
    index.upsert("docs", DOCS)
    yield index
    index.close()


def ids(hits: Sequence[KeywordHit]) -> list[str]:
    return [hit.id for hit in hits]


def test_bm25_ranks_and_stems(index: KeywordIndex) -> None:
    hits = index.search("docs", "how do cells divide", k=5)
    assert ids(hits)[0] == "bio#1"  # "cells" twice, "divide" and "dividing" (stemmed)
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    assert hits == sorted(hits, key=lambda h: -h.score)
    assert hits[0].document.startswith("Cells divide") and hits[0].metadata["year"] == 2021
    assert set(ids(index.search("docs", "folding", k=5))) == {"bio#0", "cook#0"}


def test_queries_are_words_not_syntax(index: KeywordIndex) -> None:
    assert query_terms('The "cells" AND NEAR(dna)* OR -fold') == ["cells", "near", "dna", "fold"]
    assert query_terms("the of and") == ["the", "of", "and"]  # only stop words: keep them
    assert set(ids(index.search("docs", 'cells" OR (NEAR', k=5))) >= {"bio#1"}
    assert index.search("docs", "?!  ...", k=5) == []
    with pytest.raises(ValidationError, match="k must be"):
        index.search("docs", "cells", k=0)


def test_filters_mean_what_the_filter_language_says(index: KeywordIndex) -> None:
    assert ids(index.search("docs", "fold", where={"topic": "bio"})) == ["bio#0"]
    assert ids(index.search("docs", "fold", where={"topic": {"ne": "bio"}})) == ["cook#0"]
    recent = index.search("docs", "cells fold quantum", where={"year": {"gte": 2020}})
    assert set(ids(recent)) == {"bio#1", "phys#0"}
    # true is not 1: the stored JSON keeps the types apart.
    assert ids(index.search("docs", "cells fold", where={"draft": True})) == ["bio#1"]
    assert ids(index.search("docs", "cells fold", where={"draft": {"eq": 1}})) == ["cook#0"]
    assert index.count("docs", where={"or": [{"topic": "physics"}, {"year": {"lt": 2000}}]}) == 2
    with pytest.raises(ValidationError, match="unknown operator"):
        index.search("docs", "fold", where={"year": {"gtx": 1}})


def test_upserting_an_id_again_replaces_it(index: KeywordIndex) -> None:
    index.upsert("docs", [KeywordRecord("bio#0", "Enzymes speed up reactions.", {"topic": "bio"})])
    index.upsert("docs", [KeywordRecord("bio#0", "Enzymes speed up reactions.", {"topic": "bio"})])
    assert index.count("docs") == 4
    assert ids(index.search("docs", "proteins")) == []
    assert ids(index.search("docs", "enzymes")) == ["bio#0"]
    stored = index.get("docs", ["bio#0", "missing", "phys#0"])
    assert [r.id for r in stored] == ["bio#0", "phys#0"]
    assert stored[0].metadata == {"topic": "bio"}


def test_index_text_and_returned_document_can_differ(index: KeywordIndex) -> None:
    record = KeywordRecord("h#0", "Setup > Install\n\nrun it", {"k": 1}, document="run it")
    index.upsert("docs", [record])
    (hit,) = index.search("docs", "install")
    assert hit.id == "h#0" and hit.document == "run it"


def test_document_id_filters_and_unchanged_records(tmp_path: Path) -> None:
    index = KeywordIndex(tmp_path)
    index.create_collection("c")
    chunks = [
        KeywordRecord(f"{doc}#{i}", f"{doc} part {i}", {"document_id": doc, "chunk_index": i})
        for doc in ("a", "b")
        for i in range(3)
    ]
    index.upsert("c", chunks)
    assert index.count("c", where={"document_id": "a"}) == 3
    assert index.count("c", where={"document_id": {"in": ["a", "b"]}, "chunk_index": 2}) == 2
    assert index.count("c", where={"document_id": {"eq": 5}}) == 0  # a number is not an id
    # Replacing a document with its first chunk only: the other two go, in one transaction.
    deleted = index.replace("c", chunks[:1], delete_where={"document_id": "a"})
    assert deleted == 2 and index.count("c") == 4
    assert set(ids(index.search("c", "part", k=10))) == {"a#0", "b#0", "b#1", "b#2"}
    assert index.delete("c", where={"document_id": {"in": ["b"]}}) == 3
    assert [r.id for r in index.get("c", ["a#0", "b#0"])] == ["a#0"]
    index.close()


def test_delete_by_ids_and_by_filter(index: KeywordIndex) -> None:
    assert index.delete("docs", ids=["bio#0", "nope"]) == 1
    assert index.delete("docs", where={"topic": {"in": ["bio", "physics"]}}) == 2
    assert ids(index.search("docs", "fold cells quantum", k=10)) == ["cook#0"]
    with pytest.raises(ValueError, match="exactly one"):
        index.delete("docs")


def test_replace_swaps_a_document_atomically(index: KeywordIndex) -> None:
    new = [
        KeywordRecord("bio#0", "Ribosomes build proteins.", {"topic": "bio", "document_id": "b"})
    ]
    deleted = index.replace("docs", new, delete_where={"topic": "bio"})
    assert deleted == 1  # bio#1 went; bio#0 was replaced, not counted
    assert index.count("docs", where={"topic": "bio"}) == 1
    # A failing write rolls the whole transaction back: the old records stay.
    broken = [KeywordRecord("phys#9", "fine", {}), KeywordRecord(None, "bad", {})]  # type: ignore[arg-type]
    with pytest.raises(VectorStoreError, match="keyword index of collection 'docs'"):
        index.replace("docs", broken, delete_where={"topic": "physics"})
    assert index.count("docs") == 3
    assert ids(index.search("docs", "quantum")) == ["phys#0"]


def test_collections_persist_and_are_separate(tmp_path: Path) -> None:
    first = KeywordIndex(tmp_path)
    first.create_collection("a")
    first.create_collection("b")
    first.upsert("a", DOCS[:2])
    first.upsert("b", DOCS[2:])
    first.close()
    again = KeywordIndex(tmp_path)
    assert again.list_collections() == ["a", "b"]
    assert set(ids(again.search("a", "fold cells quantum", k=10))) == {"bio#0", "bio#1"}
    assert again.count("b") == 2
    again.delete_collection("a")
    assert again.list_collections() == ["b"] and not again.has_collection("a")
    assert not list(tmp_path.glob("a.*"))
    again.close()


def test_collection_errors(tmp_path: Path) -> None:
    index = KeywordIndex(tmp_path)
    index.create_collection("c")
    with pytest.raises(ConflictError):
        index.create_collection("c")
    index.create_collection("c", exist_ok=True)
    with pytest.raises(NotFoundError, match="'nope'"):
        index.search("nope", "x")
    with pytest.raises(ValidationError, match="invalid collection name"):
        index.create_collection("../escape")
    index.delete_collection("never-made")  # nothing to do
    index.close()


def test_in_memory_index_and_threads() -> None:
    index = KeywordIndex(None)
    index.create_collection("m")

    def writer(offset: int) -> None:
        for i in range(25):
            index.upsert("m", [KeywordRecord(f"d{offset}-{i}", f"shared word{i}", {"w": offset})])

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert index.count("m") == 100
    assert len(index.search("m", "shared", k=200)) == 100
    assert index.list_collections() == ["m"]
    index.close()
