"""``make run``/``make test`` install without a compiler and say what they are doing.

Issue 10.4: the default install compiled llama.cpp (13 min on 2 cores); issue 15.9: ``make
run`` printed nothing for minutes. ``make -n`` prints the recipe a fresh checkout would run
(into a ``.venv`` that does not exist yet) without running it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _plan(target: str, tmp_path: Path) -> list[str]:
    out = subprocess.run(
        ["make", "-n", target, f"VENV={tmp_path / 'venv'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return out.splitlines()


@pytest.mark.parametrize("target", ["install", "dev"])
def test_the_default_install_compiles_nothing(target: str, tmp_path: Path) -> None:
    plan = _plan(target, tmp_path)
    installs = [line for line in plan if "pip install" in line]

    assert installs, plan
    assert not any("llama-cpp-python" in line or "CMAKE" in line for line in plan), plan
    assert any("'.[server,local,sre]'" in line for line in installs)
    pyproject = (ROOT / "pyproject.toml").read_text()
    local = re.search(r"^local = \[(.*?)\]", pyproject, re.MULTILINE | re.DOTALL)
    assert local is not None and '"xllamacpp==' in local.group(1)
    assert "llama-cpp-python" not in local.group(1)


def test_the_install_says_what_it_is_doing(tmp_path: Path) -> None:
    plan = _plan("install", tmp_path)
    steps = [line for line in plan if line.startswith('echo "==> [')]
    installs = [line for line in plan if "pip install" in line]

    assert [s.split("]")[0] for s in steps] == [
        'echo "==> [1/3',
        'echo "==> [2/3',
        'echo "==> [3/3',
    ]
    # pip's own output is the progress: never silenced on the way to a first answer
    assert not any(re.search(r"(^|\s)(-q|--quiet)(\s|$)", line) for line in installs), installs


def test_the_compiled_runtime_is_opt_in(tmp_path: Path) -> None:
    plan = _plan("local-compiled", tmp_path)

    assert any("llama-cpp-python==" in line and "--no-cache-dir" in line for line in plan)
