"""First start: migrations applied, one admin key created and shown once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from somaagent.gateway.app import create_app
from tests.gateway.conftest import make_settings

pytestmark = pytest.mark.anyio


async def test_admin_key_only_on_first_start(
    tmp_path: Path, database_url: str, fake_openai: Any
) -> None:
    shown: list[str] = []
    settings = make_settings(tmp_path, database_url, fake_openai)
    for _ in range(2):
        app = create_app(settings, on_admin_key=shown.append)
        async with app.router.lifespan_context(app):
            pass
    assert len(shown) == 1
    assert shown[0].startswith("soma_sk_")


async def test_default_print_shows_the_key_on_stderr(
    tmp_path: Path, fake_openai: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", fake_openai)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        pass
    err = capsys.readouterr().err
    assert "soma_sk_" in err
    assert "shown only this once" in err
