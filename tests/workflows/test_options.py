"""The engine's options come from the gateway's one ``Settings`` class (``SOMA_WORKFLOW_*``);
the workflows package has no settings class of its own."""

from __future__ import annotations

import pathlib

import pytest

from somaagent.gateway.routes.workflows import workflow_options
from somaagent.gateway.settings import Settings
from somaagent.workflows.options import WorkflowOptions


def test_env_names_fill_the_engine_options(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOMA_WORKFLOW_ENABLED", "false")
    monkeypatch.setenv("SOMA_WORKFLOW_CONCURRENCY", "7")
    monkeypatch.setenv("SOMA_WORKFLOW_EXECUTOR_ID", "gw-x")
    monkeypatch.setenv("SOMA_WORKFLOW_POLLING_INTERVAL_S", "0.5")
    monkeypatch.setenv("SOMA_WORKFLOW_MAINTENANCE_INTERVAL_S", "9")
    monkeypatch.setenv("SOMA_WORKFLOW_MAX_RECOVERY_ATTEMPTS", "3")
    options = workflow_options(Settings(data_dir=tmp_path))
    assert options == WorkflowOptions(
        enabled=False,
        concurrency=7,
        executor_id="gw-x",
        polling_interval_s=0.5,
        maintenance_interval_s=9.0,
        max_recovery_attempts=3,
    )


def test_defaults_agree(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("POLLING_INTERVAL_S", "MAINTENANCE_INTERVAL_S"):  # set by conftest
        monkeypatch.delenv(f"SOMA_WORKFLOW_{name}")
    assert workflow_options(Settings(data_dir=tmp_path, _env_file=None)) == WorkflowOptions()


def test_bad_values_are_refused_by_settings(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="workflow_concurrency"):
        Settings(data_dir=tmp_path, workflow_concurrency=0)


def test_no_second_settings_class() -> None:
    package = pathlib.Path(__file__).parents[2] / "src" / "somaagent" / "workflows"
    offenders = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if "pydantic_settings" in path.read_text()
    ]
    assert offenders == []
