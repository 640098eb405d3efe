"""Capsule fixtures: the real gateway (SQLite and PostgreSQL) with the capsule routes, a real
sandbox, and a capsule service over a fresh SQLite database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from somaagent.capsules.service import CapsuleService, SandboxPolicy
from somaagent.db import make_engine, make_sessionmaker, migrate
from somaagent.db.base import Tenant
from tests.gateway.conftest import (  # noqa: F401  (fixtures)
    Gateway,
    anyio_backend,
    database_url,
    gateway,
    pg_cluster,
    prepare_app,
    settings_overrides,
)

SANDBOX_ROOT = Path("/tmp/somaagent-capsules-tests")


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[CapsuleService]:
    """A capsule service on its own SQLite database, tenants ``acme`` and ``globex``."""
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'capsules.db'}")
    await migrate(engine)
    sessions = make_sessionmaker(engine)
    async with sessions() as session, session.begin():
        session.add_all([Tenant(id="acme"), Tenant(id="globex")])
    yield CapsuleService(sessions, SandboxPolicy(root=SANDBOX_ROOT))
    await engine.dispose()
