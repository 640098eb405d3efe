"""Rows of the prompt tables: the queries the store repeats, and rows as API models."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from somaagent.prompts.schemas import PromptVersion
from somaagent.prompts.tables import PromptLabel as Label
from somaagent.prompts.tables import PromptVersion as Version
from somaagent.prompts.template import TemplateSpec


def content_hash(spec: TemplateSpec) -> str:
    """A digest of everything but the name: equal digests, equal templates."""
    content = spec.model_dump(mode="json", exclude={"name"})
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def public(row: Version, labels: list[str]) -> PromptVersion:
    """A stored version as the API shows it, with the labels that point at it."""
    return PromptVersion.model_validate(
        {
            "name": row.name,
            "version": row.version,
            "role": row.role,
            "body": row.body,
            "variables": row.variables,
            "description": row.description,
            "metadata": row.metadata_,
            "labels": sorted(labels),
            "source": "tenant",
            "created_at": row.created_at,
        }
    )


def default_public(spec: TemplateSpec) -> PromptVersion:
    """A shipped default as the API shows it: version 0, source ``default``."""
    data = spec.model_dump(mode="json")
    return PromptVersion.model_validate({**data, "version": 0, "source": "default"})


async def latest(session: AsyncSession, tenant: str, name: str) -> Version | None:
    """The tenant's newest version of ``name``, if any."""
    query = (
        select(Version)
        .where(Version.tenant_id == tenant, Version.name == name)
        .order_by(Version.version.desc())
        .limit(1)
    )
    return await session.scalar(query)


async def version(session: AsyncSession, tenant: str, name: str, number: int) -> Version | None:
    """The tenant's version ``number`` of ``name``, if it exists."""
    query = select(Version).where(
        Version.tenant_id == tenant, Version.name == name, Version.version == number
    )
    return await session.scalar(query)


async def labels(session: AsyncSession, tenant: str, name: str) -> dict[str, int]:
    """The labels of ``name``: label → version."""
    found = await session.execute(
        select(Label.label, Label.version).where(Label.tenant_id == tenant, Label.name == name)
    )
    return {label: number for label, number in found}


def upsert_label(session: AsyncSession, key: dict[str, Any], values: dict[str, Any]) -> Any:
    """One ``INSERT ... ON CONFLICT DO UPDATE`` creating or moving a label (SQLite, PostgreSQL)."""
    dialect = session.get_bind().dialect.name
    module: Any = postgresql if dialect == "postgresql" else sqlite
    statement = module.insert(Label).values(**key, **values)
    return statement.on_conflict_do_update(index_elements=list(key), set_=values)


def labels_at(by_label: dict[str, int], number: int) -> list[str]:
    """The labels in ``by_label`` that point at version ``number``."""
    return [label for label, at in by_label.items() if at == number]
