"""Choosing the sandbox tier: the strongest that works, and never a weaker one silently."""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from somaagent.capsules.sandbox import _untraversable, detect_tier


@pytest.fixture
def base() -> Iterator[Path]:
    """A folder every user can pass through (pytest's own tmp_path sits under a 0700 one)."""
    path = Path(tempfile.mkdtemp(prefix="soma-tier-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_folder_others_cannot_pass_through_is_found(base: Path) -> None:
    private = base / "private"
    root = private / "capsules"
    root.mkdir(parents=True)
    private.chmod(0o700)
    assert _untraversable(root) == private.resolve()
    private.chmod(0o711)  # o+x is all a uid needs to pass through
    assert not private.stat().st_mode & stat.S_IROTH
    assert _untraversable(root) is None


def test_the_chosen_tier_is_logged(base: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="somaagent.capsules.sandbox"):
        tier = detect_tier(base / "sandbox")
    lines = [r.getMessage() for r in caplog.records if "capsule sandbox tier" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith(f"capsule sandbox tier: {tier}")
    if tier != "bwrap":  # a weaker tier says why each stronger one was passed over
        assert "bwrap:" in lines[0]


def test_a_root_out_of_the_executions_reach_is_said_not_silently_downgraded(
    base: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if os.geteuid() != 0:
        pytest.skip("runs as root (as CI does): per-execution uids")
    private = base / "private"
    private.mkdir()
    private.chmod(0o700)  # what mktemp -d makes
    with caplog.at_level(logging.INFO, logger="somaagent.capsules.sandbox"):
        tier = detect_tier(private / "sandbox")
    (line,) = [r for r in caplog.records if "capsule sandbox tier" in r.getMessage()]
    assert line.levelno == logging.WARNING
    assert tier != "bwrap"
    assert f"{private.resolve()} is not searchable by other users" in line.getMessage()
    assert "SOMA_CAPSULES_DIR" in line.getMessage()
