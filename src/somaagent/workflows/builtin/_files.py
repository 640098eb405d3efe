"""Server-side files for ``document_ingest``: paths under the operator's ingest root.

A listed path is relative to the root (``SOMA_WORKFLOW_INGEST_ROOT``) or absolute inside it.
It is checked when the run is started (a 422 naming ``input.paths.N``) and every file again
when it is listed and when it is read, because the tree may change while a run waits in the
queue: a path whose real location (symbolic links followed) leaves the root is refused, and in
a listed folder such a file is skipped, so nothing outside the root is ever read.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from somaagent.errors import ValidationError
from somaagent.types.memory import DocumentIn

DOCUMENT_SUFFIXES = (".md", ".markdown", ".mdx", ".txt")
"""The files a listed folder contributes (a listed file is read whatever its suffix)."""
_MARKDOWN = (".md", ".markdown", ".mdx")


def _error(index: int | None, message: str, kind: str) -> ValidationError:
    loc: list[str | int] = ["body", "input", "paths"]
    if index is not None:
        loc.append(index)
    return ValidationError(message, errors=[{"loc": loc, "msg": message, "type": kind}])


def resolve(root: Path | None, path: str, index: int | None = None) -> Path:
    """The real location of ``path`` under ``root``.

    Raises:
        ValidationError: reading server-side files is off (no root), or the path does not
            exist, or its real location is outside the root.
    """
    if root is None:
        raise _error(
            index,
            "this gateway reads no server-side files: its operator sets "
            "SOMA_WORKFLOW_INGEST_ROOT to allow paths under one folder",
            "paths_disabled",
        )
    real_root = root.resolve()
    candidate = Path(path)
    joined = candidate if candidate.is_absolute() else real_root / candidate
    try:
        # strict: every link followed, so a link leading out is seen for what it is
        real = joined.resolve(strict=True)
    except (OSError, RuntimeError):
        if not joined.absolute().is_relative_to(real_root):
            raise _error(index, f"{path!r} is outside the ingest root", "outside_root") from None
        raise _error(index, f"no such file or folder: {path!r}", "not_found") from None
    if not real.is_relative_to(real_root):
        raise _error(index, f"{path!r} is outside the ingest root", "outside_root")
    if not (real.is_file() or real.is_dir()):
        raise _error(index, f"{path!r} is not a file or folder", "not_a_file")
    return real


def check_paths(root: Path | None, paths: Sequence[str]) -> None:
    """Refuse the first listed path that is missing or outside the root (a 422 naming it)."""
    for index, path in enumerate(paths):
        resolve(root, path, index)


def list_files(root: Path | None, paths: Sequence[str], limit: int) -> list[str]:
    """The files the listed paths name, as paths relative to the real root, each once, in
    the order listed (a folder's documents sorted), hidden files and links out skipped.

    Raises:
        ValidationError: a path is missing or outside the root, or there are more than
            ``limit`` files.
    """
    seen: dict[str, None] = {}
    for index, path in enumerate(paths):
        real = resolve(root, path, index)
        assert root is not None  # resolve refuses every path without a root
        base = root.resolve()
        for file in [real] if real.is_file() else _folder(real):
            seen[file.relative_to(base).as_posix()] = None
        if len(seen) > limit:
            raise _error(index, f"the paths name more than {limit} files", "too_many_files")
    return list(seen)


def _folder(folder: Path) -> Iterator[Path]:
    for file in sorted(folder.rglob("*")):
        if any(part.startswith(".") for part in file.relative_to(folder).parts):
            continue
        real = file.resolve()
        if not real.is_relative_to(folder):
            continue  # a link out of the folder (and maybe the root)
        if real.is_file() and file.suffix.lower() in DOCUMENT_SUFFIXES:
            yield real


def read(root: Path | None, relative: str) -> DocumentIn:
    """The document in a listed file; its id and source are its path under the root, so a
    later run over the same files replaces them instead of adding copies.

    Raises:
        ValidationError: the file is gone, has left the root, or is not UTF-8 text, or the
            operator has turned paths off (no root) since the run was accepted.
    """
    real = resolve(root, relative)
    if not real.is_file():
        raise _error(None, f"{relative!r} is no longer a file", "not_a_file")
    try:
        data = real.read_bytes()
    except OSError as exc:  # not worth retrying: a permission or a vanished file
        raise _error(None, f"{relative!r} cannot be read: {exc.strerror}", "unreadable") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = "\x00"
    if "\x00" in text:
        raise _error(None, f"{relative!r} is binary, not UTF-8 text", "binary_file")
    fmt = "markdown" if real.suffix.lower() in _MARKDOWN else "text"
    return DocumentIn(id=relative[:256], text=text, source=relative, format=fmt)
