"""Alembic environment: runs on the connection handed over by :func:`somaagent.db.migrate`.

Every domain package keeps its tables in its own ``tables`` module (``somaagent/chat/tables.py``,
``somaagent/memory/tables.py``, ...), on :class:`somaagent.db.Base`. They are found here by that
name, not imported by name, so the ``db`` package depends on no domain while an autogenerate run
still sees every table.
"""

from __future__ import annotations

from alembic import context

from somaagent.db.base import Base
from somaagent.db.engine import load_domain_tables

load_domain_tables()

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached by the alembic CLI without a connection
    raise RuntimeError("run migrations through somaagent.db.migrate")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
