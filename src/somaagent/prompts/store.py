"""Template versions and labels in the gateway's database, per tenant, over the shipped defaults.

Every save is a new immutable version (1, 2, ...) of its name. Labels point at versions and
move in one statement, so readers never see a half-moved label; a compare-and-set move
(``expected_version``) is a single conditional ``UPDATE``. The shipped defaults are a read-only
layer under each tenant's own templates: version 0 of their names, shown until the tenant saves
a version of the same name.
"""

from __future__ import annotations

import asyncio
import difflib
import random
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from somaagent import types
from somaagent.db import new_id, utcnow
from somaagent.db.pagination import decode_cursor, encode_cursor
from somaagent.errors import BusyError, ConflictError, NotFoundError, ValidationError
from somaagent.prompts import _rows as rows
from somaagent.prompts.schemas import PromptDiff, PromptLabels, PromptSummary, PromptVersion
from somaagent.prompts.tables import PromptLabel as Label
from somaagent.prompts.tables import PromptVersion as Version
from somaagent.prompts.template import PromptRef, TemplateSpec, dump_template_text, parse_ref

__all__ = ["PromptStore"]

_SAVE_ATTEMPTS = 32
"""Tries of a save that keeps losing its version number to concurrent saves of the same name.
Each loss means another save went through, so N concurrent savers need up to N tries; past
this many the save is a busy 409 (retryable)."""
_SAVE_BACKOFF_S = 0.002
"""Up to this many seconds times the try number, at random, between tries (spreads a herd)."""


class PromptStore:
    """Versions and labels of one gateway's templates.

    Args:
        sessions: the gateway's session factory.
        defaults: the shipped templates by name (version 0 of each).
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        defaults: Mapping[str, TemplateSpec] | None = None,
    ) -> None:
        self.sessions = sessions
        self.defaults = dict(defaults or {})

    # -- versions ----------------------------------------------------------------------------

    async def create(
        self,
        tenant: str,
        spec: TemplateSpec,
        *,
        created_by: str | None = None,
        skip_unchanged: bool = False,
    ) -> tuple[PromptVersion, bool]:
        """Save ``spec`` as the next version of its name (compile it first: this does not).

        Returns:
            The version, and whether it was created (``False`` when ``skip_unchanged`` found
            the latest version identical).

        Raises:
            ConflictError: concurrent saves of the same name kept colliding.
        """
        digest = rows.content_hash(spec)
        variables = [v.model_dump(mode="json") for v in spec.variables]
        for attempt in range(_SAVE_ATTEMPTS):
            if attempt:
                await asyncio.sleep(random.uniform(0, _SAVE_BACKOFF_S * attempt))
            async with self.sessions() as session:
                latest = await rows.latest(session, tenant, spec.name)
                if skip_unchanged and latest is not None and latest.sha256 == digest:
                    labels = await rows.labels(session, tenant, spec.name)
                    return rows.public(latest, rows.labels_at(labels, latest.version)), False
                row = Version(
                    id=new_id("pv"),
                    tenant_id=tenant,
                    name=spec.name,
                    version=(latest.version if latest is not None else 0) + 1,
                    role=spec.role,
                    body=spec.body,
                    variables=variables,
                    description=spec.description,
                    metadata_=spec.metadata,
                    sha256=digest,
                    created_by=created_by,
                    created_at=utcnow(),
                )
                session.add(row)
                try:
                    await session.commit()
                except IntegrityError:  # another save took this number first: take the next
                    await session.rollback()
                    continue
                return rows.public(row, []), True
        raise BusyError(f"prompt {spec.name!r} is being saved concurrently; try again")

    async def get(
        self, tenant: str, ref: str | PromptRef, *, loc: Sequence[str | int] = ("path", "ref")
    ) -> PromptVersion:
        """The version ``ref`` names: the latest, ``name@version`` or ``name:label``.

        Raises:
            ValidationError: ``ref`` is not a valid reference.
            NotFoundError: no such template, version or label.
        """
        ref = _parse(ref, loc)
        async with self.sessions() as session:
            labels = await rows.labels(session, tenant, ref.name)
            version = ref.version
            if ref.label is not None:
                if ref.label not in labels:
                    await self._require_name(session, tenant, ref.name)
                    raise NotFoundError(f"prompt {ref.name!r} has no label {ref.label!r}")
                version = labels[ref.label]
            if version == 0:
                return self._default(ref.name)
            if version is None:
                row = await rows.latest(session, tenant, ref.name)
                if row is None:
                    return self._default(ref.name)
            else:
                row = await rows.version(session, tenant, ref.name, version)
                if row is None:
                    await self._require_name(session, tenant, ref.name)
                    raise NotFoundError(f"prompt {ref.name!r} has no version {version}")
            return rows.public(row, rows.labels_at(labels, row.version))

    async def list_page(
        self, tenant: str, *, limit: int = 20, cursor: str | None = None
    ) -> types.Page[PromptSummary]:
        """One page of the tenant's templates and the defaults, by name."""
        after = decode_cursor(cursor, str) if cursor is not None else ""
        newest = (
            select(Version.name, func.max(Version.version).label("version"))
            .where(Version.tenant_id == tenant, Version.name > after)
            .group_by(Version.name)
            .order_by(Version.name)
            .limit(limit + 1)
            .subquery()
        )
        query = (
            select(Version)
            .join(newest, and_(Version.name == newest.c.name, Version.version == newest.c.version))
            .where(Version.tenant_id == tenant)
        )
        async with self.sessions() as session:
            found = list((await session.scalars(query)).all())
            names = [r.name for r in found]
            label_rows = (
                await session.scalars(
                    select(Label).where(Label.tenant_id == tenant, Label.name.in_(names))
                )
            ).all()
        labels: dict[str, dict[str, int]] = {}
        for label in label_rows:
            labels.setdefault(label.name, {})[label.label] = label.version
        items = [
            PromptSummary(
                name=r.name,
                latest_version=r.version,
                role=r.role,
                description=r.description,
                labels=labels.get(r.name, {}),
                overrides_default=r.name in self.defaults,
                updated_at=r.created_at,
            )
            for r in found
        ]
        items += [
            PromptSummary(
                name=spec.name,
                latest_version=0,
                role=spec.role,
                description=spec.description,
                source="default",
            )
            for spec in self.defaults.values()
            if spec.name > after and spec.name not in names
        ]
        items.sort(key=lambda s: s.name)
        has_more = len(items) > limit
        items = items[:limit]
        return types.Page[PromptSummary](
            data=items,
            has_more=has_more,
            next_cursor=encode_cursor(items[-1].name) if has_more else None,
        )

    async def versions_page(
        self, tenant: str, name: str, *, limit: int = 20, cursor: str | None = None
    ) -> types.Page[PromptVersion]:
        """One page of a template's versions, newest first (a shipped default last, as 0)."""
        before = decode_cursor(cursor, int) if cursor is not None else None
        query = select(Version).where(Version.tenant_id == tenant, Version.name == name)
        if before is not None:
            query = query.where(Version.version < before)
        query = query.order_by(Version.version.desc()).limit(limit + 1)
        async with self.sessions() as session:
            found = list((await session.scalars(query)).all())
            labels = await rows.labels(session, tenant, name)
        versions = [rows.public(r, rows.labels_at(labels, r.version)) for r in found]
        if len(versions) <= limit and name in self.defaults and before != 0:
            versions.append(rows.default_public(self.defaults[name]))
        if not versions and before is None:
            raise NotFoundError(f"prompt {name!r} not found")
        has_more = len(versions) > limit
        versions = versions[:limit]
        return types.Page[PromptVersion](
            data=versions,
            has_more=has_more,
            next_cursor=encode_cursor(versions[-1].version) if has_more else None,
        )

    # -- labels ------------------------------------------------------------------------------

    async def labels(self, tenant: str, name: str) -> PromptLabels:
        """A template's labels.

        Raises:
            NotFoundError: no such template.
        """
        async with self.sessions() as session:
            labels = await rows.labels(session, tenant, name)
            if not labels:
                await self._require_name(session, tenant, name)
        return PromptLabels(name=name, labels=labels)

    async def set_label(
        self,
        tenant: str,
        name: str,
        label: str,
        version: int,
        *,
        expected_version: int | None = None,
        updated_by: str | None = None,
    ) -> PromptLabels:
        """Point ``label`` at ``version``, atomically.

        Args:
            expected_version: move only if the label points here now (``0``: only if it does
                not exist yet).

        Raises:
            NotFoundError: no such template.
            ValidationError: the version does not exist (a label must point somewhere).
            ConflictError: ``expected_version`` did not match.
        """
        values = {"version": version, "updated_by": updated_by, "updated_at": utcnow()}
        key = {"tenant_id": tenant, "name": name, "label": label}
        async with self.sessions() as session:
            if await rows.version(session, tenant, name, version) is None:
                await self._require_name(session, tenant, name, stored=True)
                raise ValidationError(
                    f"prompt {name!r} has no version {version}; a label must point at a saved "
                    "version",
                    errors=[
                        {"loc": ["body", "version"], "msg": "no such version", "type": "missing"}
                    ],
                )
            if expected_version == 0:
                statement: Any = insert(Label).values(**key, **values)
            elif expected_version is not None:
                statement = (
                    update(Label)
                    .where(*(getattr(Label, k) == v for k, v in key.items()))
                    .where(Label.version == expected_version)
                    .values(**values)
                )
            else:
                statement = rows.upsert_label(session, key, values)
            try:
                result = await session.execute(statement)
                await session.commit()
            except IntegrityError:
                await session.rollback()
                result = None
            if result is None or (expected_version and not getattr(result, "rowcount", 1)):
                current = (await rows.labels(session, tenant, name)).get(label)
                raise ConflictError(
                    f"label {label!r} of {name!r} points at "
                    f"{'version ' + str(current) if current else 'nothing'}, not version "
                    f"{expected_version}; reload and try again"
                )
            labels = await rows.labels(session, tenant, name)
        return PromptLabels(name=name, labels=labels)

    async def delete_label(self, tenant: str, name: str, label: str) -> None:
        """Remove a label.

        Raises:
            NotFoundError: no such label.
        """
        async with self.sessions() as session:
            result: Any = await session.execute(
                delete(Label).where(
                    Label.tenant_id == tenant, Label.name == name, Label.label == label
                )
            )
            await session.commit()
        if not result.rowcount:
            raise NotFoundError(f"prompt {name!r} has no label {label!r}")

    # -- diff --------------------------------------------------------------------------------

    async def diff(
        self, tenant: str, name: str, from_: str | None = None, to: str = "latest"
    ) -> PromptDiff:
        """A unified diff between two versions of ``name``, each shown as its template file.

        Args:
            from_: a version number, a label or ``latest``; the version before ``to`` if
                omitted (the shipped default, version 0, before version 1).
            to: a version number, a label or ``latest``.

        Raises:
            NotFoundError: no such template, version or label.
            ValidationError: a side is not a version, label or ``latest``, or there is no
                version before ``to``.
        """
        after = await self.get(tenant, _side(name, to, "to"))
        if from_ is None:
            previous = after.version - 1
            if previous < 0 or (previous == 0 and name not in self.defaults):
                message = f"{name}@{after.version} is the first version; nothing to compare"
                raise ValidationError(
                    message,
                    errors=[{"loc": ["query", "from"], "msg": message, "type": "value_error"}],
                )
            from_ = str(previous)
        before = await self.get(tenant, _side(name, from_, "from"))
        lines = difflib.unified_diff(
            dump_template_text(before.to_spec()).splitlines(keepends=True),
            dump_template_text(after.to_spec()).splitlines(keepends=True),
            fromfile=f"{name}@{before.version}",
            tofile=f"{name}@{after.version}",
        )
        text = "".join(lines)
        return PromptDiff(
            name=name,
            from_version=before.version,
            to_version=after.version,
            diff=text,
            changed=bool(text),
        )

    # -- helpers -----------------------------------------------------------------------------

    def _default(self, name: str) -> PromptVersion:
        spec = self.defaults.get(name)
        if spec is None:
            raise NotFoundError(f"prompt {name!r} not found")
        return rows.default_public(spec)

    async def _require_name(
        self, session: AsyncSession, tenant: str, name: str, *, stored: bool = False
    ) -> None:
        if not stored and name in self.defaults:
            return
        if await rows.latest(session, tenant, name) is None:
            raise NotFoundError(f"prompt {name!r} not found")


def _parse(ref: str | PromptRef, loc: Sequence[str | int] = ("path", "ref")) -> PromptRef:
    if isinstance(ref, PromptRef):
        return ref
    try:
        return parse_ref(ref)
    except ValueError as exc:
        raise ValidationError(
            str(exc), errors=[{"loc": list(loc), "msg": str(exc), "type": "value_error"}]
        ) from exc


def _side(name: str, value: str, field: str) -> PromptRef:
    if value == "latest":
        return _parse(name)
    if value.isdigit():
        return _parse(f"{name}@{value}")
    try:
        return parse_ref(f"{name}:{value}")
    except ValueError as exc:
        message = f"{field!r} must be a version number, a label or 'latest', not {value!r}"
        raise ValidationError(
            message, errors=[{"loc": ["query", field], "msg": message, "type": "value_error"}]
        ) from exc
