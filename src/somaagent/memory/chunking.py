"""Token-aware chunking that respects Markdown headings, paragraphs and sentences.

A document is cut into chunks of at most ``chunk_size`` tokens (counted by the caller's
counter, by default OpenAI's ``cl100k_base``), preferring to break, in order: at a Markdown
heading (a new section always starts a new chunk), between paragraphs, between sentences,
between lines of a code block, between words, and only as a last resort inside a word. Each chunk
after the first of a section repeats the last whole sentences (or lines) of the previous one, up
to ``overlap`` tokens, so a fact that straddles a boundary is still found.

Every chunk is an exact slice of the source text (``text == source[start:end]``), so its
character offsets point back into the original, and it keeps the heading path of its section.
A chunk's id is ``"{document_id}#{index}"``: chunking the same text again gives the same ids,
which is what makes re-indexing replace a document's chunks instead of duplicating them.

Token counts are summed from the pieces a chunk is packed from, so they can be off by a token
or two at each seam (a tokenizer may merge across a boundary); :attr:`Chunk.token_count` is
counted exactly on the finished chunk.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Literal

__all__ = [
    "Chunk",
    "Chunker",
    "TokenCounter",
    "chunk_id",
    "default_token_counter",
]

TokenCounter = Callable[[str], int]
"""Counts the tokens of a text."""

TextFormat = Literal["markdown", "text"]

_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
# A sentence ends at . ! or ? (and any closing quotes or brackets) followed by whitespace; a
# new line that starts a list item or a table row also starts a new unit.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n(?=[ \t]*(?:[-*+|]|\d+[.)])\s)")
_ABBREVIATIONS = frozenset(
    {"e.g.", "i.e.", "etc.", "al.", "vs.", "cf.", "fig.", "no.", "dr.", "mr.", "mrs.", "ms."}
)
_WORD = re.compile(r"\S+\s*")


def chunk_id(document_id: str, index: int) -> str:
    """The id of a document's ``index``-th chunk (0-based): ``"{document_id}#{index}"``."""
    return f"{document_id}#{index}"


@cache
def _cl100k() -> TokenCounter:
    from somaagent.llm.tokens import get_encoder

    encoder = get_encoder("cl100k_base")
    return lambda text: len(encoder.encode_ordinary(text))


def default_token_counter() -> TokenCounter:
    """``cl100k_base`` token counting, loaded offline (see :mod:`somaagent.llm.tokens`).

    Raises:
        ConfigurationError: tiktoken or its packaged encodings are not installed.
    """
    return _cl100k()


@dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of a document, ready to embed and index.

    Attributes:
        id: ``"{document_id}#{index}"``, stable across re-chunking of the same text.
        document_id: the document it comes from.
        index: its position in the document, from 0.
        text: the exact slice ``source[start:end]`` of the document's text.
        start: character offset of the chunk's first character in the document.
        end: character offset just past its last character.
        heading_path: the Markdown headings it sits under, outermost first.
        token_count: its tokens, counted by the chunker's counter.
        source: where the document came from (a path or URL), if known.
    """

    id: str
    document_id: str
    index: int
    text: str
    start: int
    end: int
    heading_path: tuple[str, ...] = ()
    token_count: int = 0
    source: str | None = None

    @property
    def indexed_text(self) -> str:
        """The text to embed and index: the chunk, led by its heading path when the chunk
        does not itself start with its heading (so a section's later chunks keep their topic).
        """
        if not self.heading_path or _HEADING.match(self.text.split("\n", 1)[0]):
            return self.text
        return " > ".join(self.heading_path) + "\n\n" + self.text

    def metadata(self) -> dict[str, str | int]:
        """The chunk's source metadata, in the flat form every vector store accepts."""
        meta: dict[str, str | int] = {
            "document_id": self.document_id,
            "chunk_index": self.index,
            "char_start": self.start,
            "char_end": self.end,
            "headings": " > ".join(self.heading_path),
        }
        if self.source is not None:
            meta["source"] = self.source
        return meta


@dataclass(frozen=True, slots=True)
class _Unit:
    """An unbreakable span of the text (a paragraph, sentence, line or word) and its tokens."""

    start: int
    end: int
    tokens: int
    # Whether the unit may be repeated as overlap: sentences and lines, not word fragments.
    overlappable: bool = True


@dataclass(slots=True)
class _Section:
    start: int
    end: int
    heading_path: tuple[str, ...]
    blocks: list[tuple[int, int, bool]] = field(default_factory=list)  # (start, end, is_code)


@dataclass(frozen=True, slots=True)
class Chunker:
    """Cuts documents into token-bounded chunks; safe to share.

    Args:
        chunk_size: the most tokens in a chunk (heading prefix not included).
        overlap: the most tokens a chunk repeats from the previous one in its section; whole
            sentences or lines only, so it can be less; ``0`` turns overlap off.
        count_tokens: the token counter; :func:`default_token_counter` when ``None``.

    Raises:
        ValueError: ``chunk_size`` under 16, or ``overlap`` negative or at least half the size.
    """

    chunk_size: int = 256
    overlap: int = 32
    count_tokens: TokenCounter | None = None

    def __post_init__(self) -> None:
        if self.chunk_size < 16:
            raise ValueError(f"chunk_size must be at least 16 tokens, not {self.chunk_size}")
        if not 0 <= self.overlap < self.chunk_size // 2:
            raise ValueError(
                f"overlap must be from 0 to less than half of chunk_size ({self.chunk_size}), "
                f"not {self.overlap}"
            )

    def chunk(
        self,
        text: str,
        *,
        document_id: str,
        source: str | None = None,
        format: TextFormat = "markdown",
    ) -> list[Chunk]:
        """Cut ``text`` into chunks.

        Args:
            text: the document's text.
            document_id: the document's id, the prefix of every chunk id.
            source: where it came from, copied onto every chunk.
            format: ``markdown`` follows headings and code fences; ``text`` only paragraphs
                and sentences.

        Returns:
            The chunks in document order; empty when the text is only whitespace.
        """
        count = self.count_tokens or default_token_counter()
        chunks: list[Chunk] = []
        for section in _sections(text, markdown=format == "markdown"):
            units = list(self._units(text, section, count))
            for start, end in self._pack(units):
                chunks.append(
                    Chunk(
                        id=chunk_id(document_id, len(chunks)),
                        document_id=document_id,
                        index=len(chunks),
                        text=text[start:end],
                        start=start,
                        end=end,
                        heading_path=section.heading_path,
                        token_count=count(text[start:end]),
                        source=source,
                    )
                )
        return chunks

    # -- units -------------------------------------------------------------------------------

    def _units(self, text: str, section: _Section, count: TokenCounter) -> Iterator[_Unit]:
        """The section's blocks, each broken down until every piece fits a chunk."""
        for start, end, is_code in section.blocks:
            tokens = count(text[start:end])
            if tokens <= self.chunk_size:
                yield _Unit(start, end, tokens)
                continue
            splitter = _lines if is_code else _sentences
            for s_start, s_end in splitter(text, start, end):
                s_tokens = count(text[s_start:s_end])
                if s_tokens <= self.chunk_size:
                    yield _Unit(s_start, s_end, s_tokens)
                else:
                    yield from self._words(text, s_start, s_end, count)

    def _words(self, text: str, start: int, end: int, count: TokenCounter) -> Iterator[_Unit]:
        """A span too long for a chunk, as word groups (or character runs) that fit."""
        group_start, group_tokens, group_end = start, 0, start
        for match in _WORD.finditer(text, start, end):
            word_tokens = count(match.group())
            if word_tokens > self.chunk_size:  # one "word" longer than a chunk: cut it
                if group_end > group_start:
                    yield _Unit(group_start, group_end, group_tokens, overlappable=False)
                yield from self._characters(text, match.start(), match.end(), count)
                group_start, group_tokens, group_end = match.end(), 0, match.end()
                continue
            if group_tokens + word_tokens > self.chunk_size and group_end > group_start:
                yield _Unit(group_start, group_end, group_tokens, overlappable=False)
                group_start, group_tokens = match.start(), 0
            group_tokens += word_tokens
            group_end = _rstrip(text, match.start(), match.end())
        if group_end > group_start:
            yield _Unit(group_start, group_end, group_tokens, overlappable=False)

    def _characters(self, text: str, start: int, end: int, count: TokenCounter) -> Iterator[_Unit]:
        # Halve the window until it fits: at worst log2(length) counts per piece.
        while start < end:
            width = end - start
            while width > 1 and count(text[start : start + width]) > self.chunk_size:
                width //= 2
            yield _Unit(start, start + width, count(text[start : start + width]), False)
            start += width

    # -- packing -----------------------------------------------------------------------------

    def _pack(self, units: Sequence[_Unit]) -> Iterator[tuple[int, int]]:
        """Greedy packing of a section's units into chunks, with sentence-level overlap."""
        current: list[_Unit] = []
        tokens = 0
        for unit in units:
            if current and tokens + unit.tokens > self.chunk_size:
                yield current[0].start, current[-1].end
                current = self._overlap(current, room=self.chunk_size - unit.tokens)
                tokens = sum(u.tokens for u in current)
            current.append(unit)
            tokens += unit.tokens
        if current:
            yield current[0].start, current[-1].end

    def _overlap(self, previous: Sequence[_Unit], *, room: int) -> list[_Unit]:
        """The trailing whole units of ``previous`` to repeat, within the overlap budget."""
        budget = min(self.overlap, room)
        kept: list[_Unit] = []
        used = 0
        for unit in reversed(previous[1:]):  # never repeat a whole chunk
            if not unit.overlappable or used + unit.tokens > budget:
                break
            kept.append(unit)
            used += unit.tokens
        return kept[::-1]


# -- structure -------------------------------------------------------------------------------


def _rstrip(text: str, start: int, end: int) -> int:
    while end > start and text[end - 1].isspace():
        end -= 1
    return end


def _sections(text: str, *, markdown: bool) -> Iterator[_Section]:
    """Split ``text`` into sections at ATX headings (outside code fences), with paragraphs."""
    path: list[tuple[int, str]] = []  # (level, title)
    section = _Section(0, len(text), ())
    fence: str | None = None
    block_start: int | None = None
    offset = 0
    code = False
    headings_only = 0  # how many of the section's blocks are heading lines

    def close_block(end: int) -> None:
        nonlocal block_start
        if block_start is not None:
            end = _rstrip(text, block_start, end)
            if end > block_start:
                section.blocks.append((block_start, end, code))
        block_start = None

    for line in text.splitlines(keepends=True):
        line_start, offset = offset, offset + len(line)
        stripped = line.strip()
        if markdown and fence is None and (heading := _HEADING.match(line.rstrip("\r\n"))):
            close_block(line_start)
            level, title = len(heading.group(1)), heading.group(2).strip()
            path = [(lv, t) for lv, t in path if lv < level] + [(level, title)]
            if len(section.blocks) > headings_only:
                yield section
                section = _Section(line_start, len(text), (), [])
                headings_only = 0
            # A section with nothing but headings so far joins the next one (no chunk that is
            # a lone title); the deeper heading path wins.
            section.heading_path = tuple(t for _, t in path)
            headings_only += 1
            # The heading line is a block of its own, so its section's first chunk shows it.
            block_start, code = line_start, False
            close_block(offset)
            continue
        if markdown and (marker := _FENCE.match(line)):
            if fence is None:
                close_block(line_start)
                fence, block_start, code = marker.group(1)[0] * 3, line_start, True
                continue
            if stripped.startswith(fence):
                fence = None
                close_block(offset)
                code = False
                continue
        if fence is not None:
            continue
        if not stripped:
            close_block(line_start)
        elif block_start is None:
            block_start = line_start + (len(line) - len(line.lstrip()))
    close_block(len(text))
    if section.blocks:
        yield section


def _sentences(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """Sentence spans of ``text[start:end]`` (and list items, which count as sentences)."""
    piece_start = start
    for match in _SENTENCE_END.finditer(text, start, end):
        before = text[piece_start : match.start()].rsplit(None, 1)
        if before and before[-1].lower() in _ABBREVIATIONS:
            continue
        piece_end = _rstrip(text, piece_start, match.start() + len(match.group().rstrip()))
        if piece_end > piece_start:
            yield piece_start, piece_end
        piece_start = match.end()
    piece_end = _rstrip(text, piece_start, end)
    if piece_end > piece_start:
        yield piece_start, piece_end


def _lines(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """Non-blank line spans of ``text[start:end]``, for code blocks."""
    offset = start
    for line in text[start:end].splitlines(keepends=True):
        line_end = _rstrip(text, offset, offset + len(line))
        if line_end > offset:
            yield offset, line_end
        offset += len(line)


def merge_metadata(
    chunk: Chunk, document_metadata: Mapping[str, str | int | float | bool]
) -> dict[str, str | int | float | bool]:
    """A chunk's metadata for the index: the document's, then the chunk's own on top."""
    return {**document_metadata, **chunk.metadata()}
