"""The one migration history against every domain's tables, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from somaagent.db import Base, make_engine, migrate
from somaagent.db.engine import load_domain_tables

pytestmark = pytest.mark.anyio


def _differences(connection: Connection) -> list[Any]:
    return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))


def test_every_domain_tables_module_is_found() -> None:
    found = load_domain_tables()
    # The domains that have tables today; a new one is found by its module's name alone.
    assert {"somaagent.chat.tables", "somaagent.memory.tables", "somaagent.prompts.tables"} <= set(
        found
    )
    assert "somaagent.accounts.tables" in found
    assert not any(name.startswith("somaagent.gateway") for name in found)
    tables = set(Base.metadata.tables)
    assert {
        "tenants",
        "conversations",
        "messages",
        "memory_collections",
        "prompt_versions",
    } <= tables
    assert {"api_keys", "usage_records", "idempotency_records"} <= tables


async def test_the_migrations_build_exactly_the_tables_on_the_base(database_url: str) -> None:
    """Every table on :class:`Base` has its migration, and the migrations build nothing else:
    Alembic's autogenerate finds nothing to add, drop or alter after ``migrate``."""
    load_domain_tables()
    engine = make_engine(database_url)
    try:
        await migrate(engine)
        await migrate(engine)  # idempotent
        async with engine.connect() as connection:
            names = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
            differences = await connection.run_sync(_differences)
    finally:
        await engine.dispose()
    assert names - {"alembic_version"} == set(Base.metadata.tables)
    assert differences == []
