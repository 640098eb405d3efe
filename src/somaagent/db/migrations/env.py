"""Alembic environment: runs on the connection handed over by ``engine.migrate``."""

from __future__ import annotations

from alembic import context

import somaagent.gateway.db.memory_models  # registers the memory tables
import somaagent.gateway.db.prompt_models  # noqa: F401  (registers the prompt tables)
from somaagent.gateway.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached by the alembic CLI without a connection
    raise RuntimeError("run migrations through somaagent.gateway.db.engine.migrate")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
