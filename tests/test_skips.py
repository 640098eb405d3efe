"""The skip list is the documented one (``tests/_skips.py``, ``tests/README.md``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests._skips import ALLOWED, AllowedSkip, problem_with

ROOT = Path(__file__).resolve().parents[1]


def test_a_documented_reason_is_allowed_only_while_its_prerequisite_is_missing() -> None:
    missing = [AllowedSkip(r"the widget binary is not installed", "widget", lambda _: False)]
    present = [AllowedSkip(r"the widget binary is not installed", "widget", lambda _: True)]

    assert problem_with("the widget binary is not installed", missing) is None
    problem = problem_with("the widget binary is not installed", present)
    assert problem is not None and "this machine has widget" in problem


def test_data_outside_the_repo_is_never_a_reason() -> None:
    for reason in (
        "RouteLLM data not present",
        # a reason naming data beside the checkout (this test reads no such data)
        "the Chaos Mesh CRDs are not in the reference data folder (set SOMA_CHAOS_CRDS)",
    ):
        problem = problem_with(reason)
        assert problem is not None and "not a documented reason" in problem


def test_an_optional_module_that_is_installed_may_not_be_skipped() -> None:
    problem = problem_with("could not import 'json': boom")
    assert problem is not None and "this machine has" in problem
    assert problem_with("could not import 'no_such_module_here': No module named ...") is None


def test_the_readme_documents_every_allowed_reason() -> None:
    readme = (ROOT / "tests" / "README.md").read_text()
    for entry in ALLOWED:
        assert entry.needs in readme, entry.needs


def test_an_undocumented_skip_fails_the_run(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_sample.py").write_text(
        textwrap.dedent(
            """
            import pytest

            def test_runs() -> None:
                assert True

            def test_documented() -> None:
                pytest.skip("could not import 'no_such_module_here': No module named it")

            def test_undocumented() -> None:
                pytest.skip("the data folder is missing")
            """
        )
    )

    def run(*select: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "tests._skips", "-q", "-p", "no:cacheprovider"]
            + ["-c", str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path)]
            + [f"{tmp_path / 'test_sample.py'}::{name}" for name in select],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    allowed = run("test_runs", "test_documented")
    assert allowed.returncode == 0, allowed.stdout
    refused = run("test_runs", "test_documented", "test_undocumented")
    assert refused.returncode == 1, refused.stdout
    assert "skips outside the documented list" in refused.stdout
    assert "not a documented reason to skip" in refused.stdout
    assert "the data folder is missing" in refused.stdout
