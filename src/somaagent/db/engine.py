"""The async engine and session factory, and schema migration at start.

SQLite runs in WAL mode with a busy timeout so readers never block the writer; PostgreSQL
goes through asyncpg. Migrations are Alembic's, one history for every
domain's tables (``migrations/versions``), applied programmatically on start so a fresh data
directory needs no manual step.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.util.exc import CommandError
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from somaagent.errors import ConfigurationError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def load_domain_tables() -> list[str]:
    """Import every domain's ``tables`` module (``somaagent/<domain>/tables.py`` or a
    ``tables`` package), so :attr:`Base.metadata` holds every table; their names, sorted.

    Found by that name, not imported by name, so this package depends on no domain.
    """
    found = []
    for package in sorted(_PACKAGE_ROOT.iterdir()):
        if (package / "tables.py").is_file() or (package / "tables" / "__init__.py").is_file():
            found.append(f"somaagent.{package.name}.tables")
    for name in found:
        importlib.import_module(name)
    return found


BUSY_TIMEOUT_S = 30
"""How long a SQLite writer waits for another's transaction before giving up."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # as long as the driver's own ``timeout`` below: SQLite writes one transaction at a time, and
    # a writer that waits its turn must wait, not fail with "database is locked" (at 5 s, 50
    # concurrent sends to one conversation on a busy machine failed)
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
    cursor.close()


def make_engine(url: str) -> AsyncEngine:
    """Create the async engine for ``url``; a missing driver names the extra to install."""
    try:
        if url.startswith("sqlite"):
            path = url.split(":///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = create_async_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
            return engine
        return create_async_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    except ModuleNotFoundError as exc:
        extra = "postgres" if "postgres" in url else "server"
        raise ConfigurationError(
            f"the database driver for {url.split(':', 1)[0]} is missing ({exc.name}); "
            f"install it: pip install 'somaagent[{extra}]'"
        ) from exc


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """The session factory every service takes (objects stay readable after commit)."""
    return async_sessionmaker(engine, expire_on_commit=False)


def _alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    command.upgrade(_alembic_config(connection), "head")


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the latest migration (idempotent).

    Raises:
        ConfigurationError: the database cannot be reached, or its schema cannot be brought up
            to date (one line naming the URL, its password hidden, and why).
    """
    url = engine.url.render_as_string(hide_password=True)
    try:
        connection = await engine.connect()
    except (OSError, SQLAlchemyError) as exc:  # refused, unknown host, timeout, bad login
        raise ConfigurationError(
            f"could not connect to the database {url}: {_reason(exc)}; check SOMA_DATABASE_URL "
            "and that the database server runs"
        ) from exc
    try:
        async with connection.begin():
            await connection.run_sync(_upgrade)
    except (OSError, SQLAlchemyError, CommandError) as exc:
        raise ConfigurationError(f"could not migrate the database {url}: {_reason(exc)}") from exc
    finally:
        await connection.close()


def _reason(exc: BaseException) -> str:
    """The error's own first line (a driver's message can run to several), else its type."""
    cause = exc.orig if isinstance(exc, SQLAlchemyError) and hasattr(exc, "orig") else exc
    text = str(cause).strip().splitlines()
    return text[0] if text else type(cause).__name__
