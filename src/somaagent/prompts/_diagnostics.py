"""Where in a template a problem is: line and column for syntax errors and checks.

Jinja2 reports only a line. To give a column as well, the source is parsed with a token stream
that remembers each token's offset, so the token the parser failed on can be found again; the
lexer's own errors give an offset in their message ("unexpected char '$' at 7").
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from jinja2 import Environment, TemplateSyntaxError, nodes
from jinja2.lexer import Token, TokenStream
from jinja2.parser import Parser

from somaagent.prompts._guard import TEMPLATE_FILENAME

_NEWLINES = re.compile(r"\r\n|\r")
_AT_OFFSET = re.compile(r" at (\d+)$")


@dataclass(frozen=True, slots=True)
class Position:
    """A 1-based line and column."""

    line: int
    column: int


def normalize_newlines(source: str) -> str:
    """The source as Jinja's lexer sees it: every line break a ``\\n``."""
    return _NEWLINES.sub("\n", source)


def position_of(source: str, offset: int) -> Position:
    """The line and column of character ``offset`` of ``source``."""
    offset = max(0, min(offset, len(source)))
    line = source.count("\n", 0, offset) + 1
    return Position(line, offset - (source.rfind("\n", 0, offset) + 1) + 1)


class _OffsetTracker:
    """Feeds the parser the lexer's tokens while recording where each one starts."""

    def __init__(self, environment: Environment, source: str) -> None:
        self.environment = environment
        self.source = source
        self.cursor = 0
        self.last_start = 0
        self.lexer_failed = False
        self.offsets: dict[int, int] = {}
        self._tokens: list[Token] = []  # keeps tokens alive, so their ids stay unique

    def _raw(self) -> Iterator[tuple[int, str, str]]:
        try:
            for lineno, kind, value in self.environment.lexer.tokeniter(self.source, None):
                start = self.source.find(value, self.cursor) if value else -1
                if start < 0:
                    start = self.cursor
                self.last_start = start
                self.cursor = start + len(value)
                yield lineno, kind, value
        except TemplateSyntaxError:
            self.lexer_failed = True
            raise

    def stream(self) -> TokenStream:
        def annotated() -> Iterator[Token]:
            for token in self.environment.lexer.wrap(self._raw()):
                self._tokens.append(token)
                self.offsets[id(token)] = self.last_start
                yield token

        return TokenStream(annotated(), None, None)


def parse_with_positions(environment: Environment, source: str) -> nodes.Template:
    """Parse ``source``; a syntax error comes out with ``.position`` set.

    Raises:
        TemplateSyntaxError: with an extra ``position`` attribute (a :class:`Position`).
    """
    tracker = _OffsetTracker(environment, source)
    parser = Parser(environment, source)
    parser.stream = tracker.stream()
    try:
        return parser.parse()
    except TemplateSyntaxError as exc:
        exc.position = _locate(exc, source, tracker, parser.stream.current)  # type: ignore[attr-defined]
        raise


def _locate(
    exc: TemplateSyntaxError, source: str, tracker: _OffsetTracker, current: Token
) -> Position:
    if tracker.lexer_failed:
        match = _AT_OFFSET.search(exc.message or "")
        offset = int(match.group(1)) if match else tracker.cursor
        while offset < len(source) and source[offset] in " \t":
            offset += 1
        return position_of(source, offset)
    if current.type == "eof":
        return position_of(source, len(source.rstrip()))
    found = tracker.offsets.get(id(current))
    if found is None:
        return Position(exc.lineno, 1)
    return position_of(source, found)


def find_in_line(source: str, line: int, needle: str, *, word: bool = True) -> Position:
    """Where ``needle`` first appears on ``line`` (column 1 if it does not)."""
    lines = source.split("\n")
    if not 1 <= line <= len(lines):
        return Position(line, 1)
    pattern = rf"(?<![\w.]){re.escape(needle)}(?!\w)" if word else re.escape(needle)
    match = re.search(pattern, lines[line - 1])
    return Position(line, match.start() + 1 if match else 1)


def error_line(exc: BaseException) -> int | None:
    """The template line an error happened on, from its traceback (Jinja rewrites it so)."""
    line: int | None = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == TEMPLATE_FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
