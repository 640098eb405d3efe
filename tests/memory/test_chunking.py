"""Chunking: token bounds, exact offsets, headings, paragraphs, sentences, overlap, ids."""

from __future__ import annotations

import itertools

import pytest

from somaagent.memory.chunking import Chunk, Chunker, chunk_id, default_token_counter


def words(text: str) -> int:
    """A predictable token counter: one token per whitespace-separated word."""
    return len(text.split())


def chunker(size: int = 40, overlap: int = 0) -> Chunker:
    return Chunker(chunk_size=size, overlap=overlap, count_tokens=words)


def sentences(n: int, topic: str = "topic") -> str:
    return " ".join(f"Sentence {i} is about {topic} {i}." for i in range(n))  # 6 words each


def check_slices(text: str, chunks: list[Chunk], size: int) -> None:
    for chunk in chunks:
        assert text[chunk.start : chunk.end] == chunk.text
        assert chunk.text == chunk.text.strip()
        assert chunk.token_count == words(chunk.text) <= size


GUIDE = """# Guide

Intro paragraph of the guide.

## Install

Run pip install somaagent. Then start the server.

```bash
# not a heading: inside a code fence
soma serve
```

## Use

### Search

Search with soma memory search.
"""


def test_chunks_are_exact_slices_with_heading_paths() -> None:
    chunks = chunker(size=30).chunk(GUIDE, document_id="guide", source="docs/guide.md")
    check_slices(GUIDE, chunks, 30)
    paths = [c.heading_path for c in chunks]
    assert paths == [("Guide",), ("Guide", "Install"), ("Guide", "Use", "Search")]
    # A heading always opens a chunk; a section with only a title joins the next one.
    assert chunks[1].text.startswith("## Install")
    assert chunks[2].text.startswith("## Use\n\n### Search")
    assert "soma serve" in chunks[1].text and "not a heading" in chunks[1].text
    assert [c.id for c in chunks] == ["guide#0", "guide#1", "guide#2"]
    assert all(c.source == "docs/guide.md" and c.document_id == "guide" for c in chunks)
    assert chunks[1].metadata() == {
        "document_id": "guide",
        "chunk_index": 1,
        "char_start": chunks[1].start,
        "char_end": chunks[1].end,
        "headings": "Guide > Install",
        "source": "docs/guide.md",
    }


def test_paragraphs_are_kept_whole_when_they_fit() -> None:
    paragraphs = [sentences(2, f"p{i}") for i in range(6)]  # 12 words each
    text = "\n\n".join(paragraphs)
    chunks = chunker(size=30).chunk(text, document_id="d", format="text")
    check_slices(text, chunks, 30)
    starts = {text.index(p) for p in paragraphs}
    ends = {text.index(p) + len(p) for p in paragraphs}
    assert all(c.start in starts and c.end in ends for c in chunks)
    assert [c.text.count("\n\n") for c in chunks] == [1, 1, 1]  # two paragraphs per chunk


def test_long_paragraphs_break_between_sentences() -> None:
    text = sentences(20)
    chunks = chunker(size=20).chunk(text, document_id="d")
    check_slices(text, chunks, 20)
    assert len(chunks) == 7  # 3 sentences of 6 words per chunk
    assert all(c.text.startswith("Sentence ") and c.text.endswith(".") for c in chunks)


def test_overlap_repeats_whole_trailing_sentences() -> None:
    text = sentences(20)
    chunks = chunker(size=20, overlap=6).chunk(text, document_id="d")
    check_slices(text, chunks, 20)
    for previous, current in itertools.pairwise(chunks):
        last_sentence = previous.text[previous.text.rindex("Sentence") :]
        assert current.text.startswith(last_sentence)
        assert current.start < previous.end  # they overlap in the source
    assert chunks[-1].text.endswith("Sentence 19 is about topic 19.")


def test_overlap_stays_within_its_section() -> None:
    text = "# A\n\n" + sentences(6, "alpha") + "\n\n# B\n\n" + sentences(6, "beta")
    chunks = chunker(size=20, overlap=6).chunk(text, document_id="d")
    assert {c.heading_path for c in chunks} == {("A",), ("B",)}
    assert all("alpha" not in c.text for c in chunks if c.heading_path == ("B",))


def test_oversized_sentences_and_words_are_cut() -> None:
    long_sentence = " ".join(f"w{i}" for i in range(50))  # one 50-word sentence
    text = long_sentence + "\n\n" + "x" * 300
    counter = default_token_counter()
    chunks = Chunker(chunk_size=16, overlap=4, count_tokens=counter).chunk(text, document_id="d")
    for chunk in chunks:
        assert text[chunk.start : chunk.end] == chunk.text
        assert counter(chunk.text) <= 16
    covered = "".join(c.text for c in chunks if c.text.startswith("x"))
    assert covered == "x" * 300  # word fragments are never repeated as overlap


def test_text_format_ignores_markdown() -> None:
    text = "# not a heading\n\nbody text here"
    chunks = chunker().chunk(text, document_id="d", format="text")
    assert [c.heading_path for c in chunks] == [()]
    assert chunks[0].text == text


def test_indexed_text_leads_with_the_heading_path() -> None:
    text = "# Install\n\n" + sentences(10)
    chunks = chunker(size=20).chunk(text, document_id="d")
    assert chunks[0].indexed_text == chunks[0].text  # it starts with its own heading
    assert chunks[1].indexed_text == "Install\n\n" + chunks[1].text


def test_same_text_same_chunks() -> None:
    first = chunker(size=20, overlap=6).chunk(GUIDE * 3, document_id="g")
    second = chunker(size=20, overlap=6).chunk(GUIDE * 3, document_id="g")
    assert first == second
    assert chunk_id("g", 4) == "g#4"


def test_whitespace_only_gives_no_chunks() -> None:
    assert chunker().chunk(" \n\n\t ", document_id="d") == []


def test_default_counter_counts_cl100k_tokens() -> None:
    chunks = Chunker(chunk_size=64, overlap=8).chunk(sentences(40), document_id="d")
    counter = default_token_counter()
    assert len(chunks) > 3
    assert all(0 < c.token_count == counter(c.text) <= 64 for c in chunks)


@pytest.mark.parametrize(("size", "overlap"), [(8, 0), (64, 32), (64, -1)])
def test_bad_settings_are_refused(size: int, overlap: int) -> None:
    with pytest.raises(ValueError, match=r"chunk_size|overlap"):
        Chunker(chunk_size=size, overlap=overlap)
