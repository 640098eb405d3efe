"""The database fixtures of the gateway tests: SQLite, and PostgreSQL where it is installed."""

from __future__ import annotations

from tests.gateway.conftest import database_url, pg_cluster

__all__ = ["database_url", "pg_cluster"]
