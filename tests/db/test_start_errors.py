"""The database failing at start: one :class:`ConfigurationError` line naming the URL, its
password hidden, never a driver's traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from somaagent.db import make_engine, migrate
from somaagent.errors import ConfigurationError
from tests.fakes._server import free_port

pytestmark = pytest.mark.anyio


async def test_an_unreachable_postgres_is_a_configuration_error_without_the_password() -> None:
    port = free_port()  # nothing listens there
    engine = make_engine(f"postgresql+asyncpg://soma:s3cret@127.0.0.1:{port}/soma")
    try:
        with pytest.raises(ConfigurationError) as failure:
            await migrate(engine)
    finally:
        await engine.dispose()
    message = str(failure.value)
    assert message.startswith(
        f"could not connect to the database postgresql+asyncpg://soma:***@127.0.0.1:{port}/soma: "
    )
    assert "s3cret" not in message and "\n" not in message
    assert isinstance(failure.value.__cause__, OSError)  # the refused connection, kept as cause


async def test_a_schema_it_cannot_migrate_is_a_configuration_error(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'soma.db'}")
    try:
        await migrate(engine)
        async with engine.begin() as connection:  # as if a newer SomaAgent had migrated it
            await connection.execute(text("UPDATE alembic_version SET version_num = 'f00d'"))
        with pytest.raises(ConfigurationError) as failure:
            await migrate(engine)
    finally:
        await engine.dispose()
    message = str(failure.value)
    assert message.startswith(f"could not migrate the database sqlite+aiosqlite:///{tmp_path}")
    assert "f00d" in message and "\n" not in message
