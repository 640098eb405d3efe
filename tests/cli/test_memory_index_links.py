"""``soma memory index`` leaves symbolic links out of the folder alone unless
``--follow-links`` (issue 14); the reading itself is tested in
``tests/sdk/test_read_documents_links.py``."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import Invoke

# the package exports the ``memory`` command group under the module's name
cli_memory = importlib.import_module("somaagent.cli.memory")


@pytest.mark.parametrize(("flags", "expected"), [((), False), (("--follow-links",), True)])
def test_the_flag_reaches_the_reader(
    invoke: Invoke,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    flags: tuple[str, ...],
    expected: bool,
) -> None:
    seen: list[Any] = []

    def reader(path: Path, **kwargs: Any) -> list[Any]:
        seen.append(kwargs.get("follow_links"))
        raise ValueError("stop here: no gateway in this test")

    monkeypatch.setattr(cli_memory, "read_documents", reader)
    result = invoke("memory", "index", "kb", str(tmp_path), *flags)
    assert result.exit_code == 1 and "stop here" in result.stderr
    assert seen == [expected]
