"""Run a snippet and capture what it prints; the sandbox around this process is the guard."""

from __future__ import annotations

import contextlib
import io
import traceback
from typing import Any

_MAX_STDOUT = 256 * 1024


def run(code: str) -> dict[str, Any]:
    """Execute ``code`` in a fresh namespace; return its stdout and any error."""
    buffer = io.StringIO()
    error = None
    with contextlib.redirect_stdout(buffer):
        try:
            exec(compile(code, "<snippet>", "exec"), {"__name__": "__main__"})
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    out = buffer.getvalue()
    if len(out) > _MAX_STDOUT:
        out = out[:_MAX_STDOUT] + f"\n[... cut: {len(out) - _MAX_STDOUT} more characters]"
    return {"stdout": out, "error": error}
