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


async def test_a_start_that_fails_half_way_closes_what_it_opened(
    tmp_path: Path, database_url: str, fake_openai: Any
) -> None:
    # Memory is opened, then its start-up repair fails: the lifespan must close the memory
    # service it made (and the database engine) before the error reaches the server.
    events: list[str] = []

    class BrokenMemory:
        async def repair(self) -> None:
            events.append("repair")
            raise RuntimeError("disk unreadable")

        async def aclose(self) -> None:
            events.append("closed")

    settings = make_settings(tmp_path, database_url, fake_openai)
    app = create_app(settings, on_admin_key=lambda _: None)
    app.state.memory_factory = lambda *_: BrokenMemory()
    with pytest.raises(RuntimeError, match="disk unreadable"):
        async with app.router.lifespan_context(app):
            pass
    assert events == ["repair", "closed"]
    # and the same settings start cleanly afterwards (nothing held the database)
    good = create_app(settings, on_admin_key=lambda _: None)
    async with good.router.lifespan_context(good):
        assert good.state.gateway.engine is not None
