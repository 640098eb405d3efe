"""The capsule service: install, list, remove and execute a tenant's capsules.

Versions are immutable: installing a version again with the same content changes nothing;
with different content (a changed tool description, schema or file) it is refused, so a tool an
agent approved cannot change under it without a new version. Executions are recorded.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from somaagent.accounts.keys import Principal
from somaagent.capsules import package as packaging
from somaagent.capsules.catalog import catalog_ids, catalog_package
from somaagent.capsules.hosted import HostedTools, HostServices
from somaagent.capsules.manifest import Manifest, ToolSpec, semver_key
from somaagent.capsules.policy import UNENFORCEABLE, SandboxPolicy, unenforceable
from somaagent.capsules.remote import RemoteCaller
from somaagent.capsules.runner import Outcome, Runner, schema_problem
from somaagent.capsules.sandbox import Tier, detect_tier
from somaagent.capsules.tables import CapsuleExecutionRow, CapsuleInstallRow, CapsuleVersionRow
from somaagent.capsules.views import (
    capsule_public,
    changed_message,
    decode_archive,
    execution_public,
)
from somaagent.capsules.warm import WarmPool
from somaagent.db import decode_cursor, encode_cursor, new_id
from somaagent.errors import ConflictError, NotFoundError, PermissionDeniedError, ValidationError
from somaagent.types.capsules import Capsule, CapsuleVersion, Execution

__all__ = ["UNENFORCEABLE", "CapsuleService", "SandboxPolicy", "decode_archive", "unenforceable"]


class CapsuleService:
    """Capsules for every tenant, over one database and one sandbox root."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        policy: SandboxPolicy,
        host: HostServices | None = None,
    ) -> None:
        self.sessions = sessions
        self.policy = policy
        self.tier: Tier = detect_tier(policy.root) if policy.tier == "auto" else policy.tier
        self.hosted = HostedTools(host or HostServices())
        self.warm = (
            WarmPool(policy.warm_pool, max_total=policy.max_concurrent)
            if policy.warm_pool > 0
            else None
        )
        self.runner = Runner(
            policy.root,
            self.tier,
            max_concurrent=policy.max_concurrent,
            allow_private=self.hosted.services.allow_private_networks,
            warm=self.warm,
            egress_bytes=policy.egress_mb * 1024 * 1024,
        )
        self.remote = RemoteCaller(allow_private=self.hosted.services.allow_private_networks)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[CapsuleService]:
        """Keep the warm pool (when configured) for as long as the block runs."""
        if self.warm is None:
            yield self
            return
        async with self.warm.running():
            yield self

    # -- installing -------------------------------------------------------------------------

    async def install(
        self,
        tenant: str,
        *,
        capsule_id: str | None = None,
        archive: bytes | None = None,
        who: str | None = None,
    ) -> tuple[Capsule, bool]:
        """Install a catalog capsule or an uploaded archive; ``(capsule, created)``."""
        if capsule_id is not None:
            found = catalog_package(capsule_id)
            if found is None:
                raise NotFoundError(
                    f"no capsule {capsule_id!r} in the catalog (it has: {', '.join(catalog_ids())})"
                )
            return await self.install_package(tenant, found, source="catalog", who=who)
        assert archive is not None
        return await self.install_package(tenant, packaging.from_archive(archive), who=who)

    async def install_package(
        self,
        tenant: str,
        package: packaging.Package,
        *,
        source: str = "upload",
        who: str | None = None,
    ) -> tuple[Capsule, bool]:
        """Store ``package`` as an immutable version (if new) and make it the installed one."""
        manifest = package.manifest
        if manifest.kind == "builtin" and source != "catalog":
            raise ValidationError(
                "kind 'builtin' is reserved for the shipped catalog",
                errors=[{"loc": ["manifest", "kind"], "msg": "reserved", "type": "value_error"}],
            )
        if manifest.kind == "mcp" and not manifest.tools:
            listed = await self._discover(manifest, package.to_archive())
            # the discovered tools are part of what is pinned: a server that later lists
            # other tools cannot be installed again under the same version
            manifest = listed.pinned(packaging.content_sha256(listed, package.files))
            package = packaging.Package(manifest=manifest, files=package.files)
        async with self.sessions() as session, session.begin():
            existing = await session.scalar(
                select(CapsuleVersionRow).where(
                    CapsuleVersionRow.tenant_id == tenant,
                    CapsuleVersionRow.name == manifest.name,
                    CapsuleVersionRow.version == manifest.version,
                )
            )
            created = existing is None
            if existing is not None and existing.sha256 != manifest.sha256:
                raise ConflictError(
                    changed_message(Manifest.model_validate(existing.manifest), manifest)
                )
            if existing is None:
                session.add(
                    CapsuleVersionRow(
                        id=new_id("cv"),
                        tenant_id=tenant,
                        name=manifest.name,
                        version=manifest.version,
                        kind=manifest.kind,
                        manifest=manifest.model_dump(mode="json"),
                        sha256=manifest.sha256,
                        archive=package.to_archive(),
                        source=source,
                        created_by=who,
                    )
                )
                await session.flush()
            install = await session.get(CapsuleInstallRow, (tenant, manifest.name))
            if install is None:
                install = CapsuleInstallRow(
                    tenant_id=tenant, name=manifest.name, version=manifest.version, installed_by=who
                )
                session.add(install)
                created = True
            elif install.version != manifest.version:
                install.version = manifest.version
                install.installed_by = who
                created = True
            await session.flush()
            installed_at = install.installed_at
        return capsule_public(
            manifest, installed=True, source=source, installed_at=installed_at
        ), created

    async def _discover(self, manifest: Manifest, archive: bytes) -> Manifest:
        """An mcp capsule's manifest with the tools its server lists (asked in the sandbox)."""
        self._check_enforceable(manifest)
        if manifest.url is not None:
            try:
                tools = await self.remote.list_tools(manifest.url, manifest.permissions.timeout_s)
            except Exception as exc:  # refused, unreachable or not MCP: the url is at fault
                raise ValidationError(
                    f"could not list the tools of {manifest.url}: {exc}",
                    errors=[
                        {"loc": ["manifest", "url"], "msg": str(exc)[:300], "type": "value_error"}
                    ],
                ) from exc
        else:
            tools = await self.runner.list_tools(manifest, archive)
        if not tools:
            raise ValidationError(
                f"the MCP server of {manifest.name} lists no tools",
                errors=[{"loc": ["manifest", "tools"], "msg": "no tools", "type": "value_error"}],
            )
        listed = manifest.model_copy(update={"tools": tools, "sha256": None})
        return Manifest.model_validate(listed.model_dump(mode="json"))

    # -- reading ----------------------------------------------------------------------------

    async def _installed(
        self, session: AsyncSession, tenant: str, name: str | None = None
    ) -> list[tuple[CapsuleInstallRow, CapsuleVersionRow]]:
        query = (
            select(CapsuleInstallRow, CapsuleVersionRow)
            .join(
                CapsuleVersionRow,
                (CapsuleVersionRow.tenant_id == CapsuleInstallRow.tenant_id)
                & (CapsuleVersionRow.name == CapsuleInstallRow.name)
                & (CapsuleVersionRow.version == CapsuleInstallRow.version),
            )
            .where(CapsuleInstallRow.tenant_id == tenant)
            .order_by(CapsuleInstallRow.name)
        )
        if name is not None:
            query = query.where(CapsuleInstallRow.name == name)
        return [(row[0], row[1]) for row in (await session.execute(query)).all()]

    async def listing(
        self, tenant: str, *, installed: bool | None = None, query: str | None = None
    ) -> list[Capsule]:
        """The tenant's installed capsules and the catalog's others, filtered."""
        async with self.sessions() as session:
            rows = await self._installed(session, tenant)
        out = [
            capsule_public(
                Manifest.model_validate(version.manifest),
                installed=True,
                source=version.source,
                installed_at=install.installed_at,
            )
            for install, version in rows
        ]
        if installed is not True:
            have = {capsule.name for capsule in out}
            for capsule_id in catalog_ids():
                found = catalog_package(capsule_id)
                if capsule_id not in have and found is not None:
                    out.append(capsule_public(found.manifest, installed=False, source="catalog"))
        if installed is False:
            out = [capsule for capsule in out if not capsule.installed]
        if query:
            needle = query.lower()
            out = [c for c in out if needle in c.name.lower() or needle in c.description.lower()]
        return sorted(out, key=lambda capsule: capsule.name)

    async def get(self, tenant: str, name: str) -> Capsule:
        """The installed capsule ``name``, else the catalog's; 404 when neither."""
        async with self.sessions() as session:
            rows = await self._installed(session, tenant, name)
        if rows:
            install, version = rows[0]
            return capsule_public(
                Manifest.model_validate(version.manifest),
                installed=True,
                source=version.source,
                installed_at=install.installed_at,
            )
        found = catalog_package(name)
        if found is None:
            raise NotFoundError(f"no capsule {name!r}")
        return capsule_public(found.manifest, installed=False, source="catalog")

    async def versions(self, tenant: str, name: str) -> list[CapsuleVersion]:
        """Every stored version of the tenant's capsule ``name``, newest first."""
        async with self.sessions() as session:
            rows = (
                await session.scalars(
                    select(CapsuleVersionRow).where(
                        CapsuleVersionRow.tenant_id == tenant, CapsuleVersionRow.name == name
                    )
                )
            ).all()
            install = await session.get(CapsuleInstallRow, (tenant, name))
        if not rows:
            raise NotFoundError(f"no capsule {name!r} installed")
        current = install.version if install is not None else None
        ordered = sorted(rows, key=lambda row: semver_key(row.version), reverse=True)
        return [
            CapsuleVersion(
                version=row.version,
                sha256=row.sha256,
                source="catalog" if row.source == "catalog" else "upload",
                current=row.version == current,
                created_at=row.created_at,
            )
            for row in ordered
        ]

    async def uninstall(self, tenant: str, name: str) -> None:
        """Remove the tenant's install of ``name`` (stored versions stay immutable)."""
        async with self.sessions() as session, session.begin():
            result = await session.execute(
                delete(CapsuleInstallRow).where(
                    CapsuleInstallRow.tenant_id == tenant, CapsuleInstallRow.name == name
                )
            )
        if not getattr(result, "rowcount", 0):
            raise NotFoundError(f"no capsule {name!r} installed")

    async def tools(self, tenant: str) -> list[tuple[Manifest, ToolSpec]]:
        """Every tool of the tenant's installed capsules (what ``/mcp`` serves)."""
        async with self.sessions() as session:
            rows = await self._installed(session, tenant)
        out: list[tuple[Manifest, ToolSpec]] = []
        for _, version in rows:
            manifest = Manifest.model_validate(version.manifest)
            out.extend((manifest, tool) for tool in manifest.tools)
        return out

    # -- executing --------------------------------------------------------------------------

    async def _version(
        self, session: AsyncSession, tenant: str, name: str, version: str | None
    ) -> CapsuleVersionRow:
        if version is None:
            rows = await self._installed(session, tenant, name)
            if not rows:
                raise NotFoundError(f"no capsule {name!r} installed (install it first)")
            return rows[0][1]
        row = await session.scalar(
            select(CapsuleVersionRow).where(
                CapsuleVersionRow.tenant_id == tenant,
                CapsuleVersionRow.name == name,
                CapsuleVersionRow.version == version,
            )
        )
        if row is None:
            raise NotFoundError(f"no version {version} of capsule {name!r}")
        return row

    def _check_enforceable(self, manifest: Manifest) -> None:
        problem = unenforceable(manifest, self.tier)
        if problem is not None and not self.policy.allow_unconfined:
            raise PermissionDeniedError(
                f"capsule {manifest.name} cannot run confined here: {problem}; an operator may "
                "allow it with SOMA_CAPSULES_ALLOW_UNCONFINED=true",
                problem_type=UNENFORCEABLE,
            )

    async def execute(
        self,
        tenant: str,
        name: str,
        *,
        version: str | None = None,
        tool: str | None = None,
        arguments: dict[str, Any] | None = None,
        key_id: str | None = None,
        principal: Principal | None = None,
    ) -> Execution:
        """Call one tool of an installed capsule and record the call.

        ``principal`` is the caller: builtin tools charge their model calls to its key (and
        refuse with a 429 once its monthly budget is spent); ``key_id`` defaults to its key.
        """
        arguments = arguments or {}
        if principal is not None:
            key_id = key_id or principal.key_id
        async with self.sessions() as session:
            row = await self._version(session, tenant, name, version)
        manifest = Manifest.model_validate(row.manifest)
        try:
            spec = manifest.tool(tool)
        except KeyError:
            raise ValidationError(
                f"capsule {name} has no tool {tool!r} (it has: "
                f"{', '.join(t.name for t in manifest.tools)})",
                errors=[{"loc": ["body", "tool"], "msg": "unknown tool", "type": "value_error"}],
            ) from None
        problem = schema_problem(spec.input_schema, arguments)
        if problem is not None:
            where = problem.split(":", 1)[0]
            raise ValidationError(
                f"invalid arguments for {name}.{spec.name}: {problem}",
                errors=[
                    {
                        "loc": [
                            "body",
                            "arguments",
                            *([] if where == "(root)" else where.split("/")),
                        ],
                        "msg": problem,
                        "type": "value_error",
                    }
                ],
            )
        self._check_enforceable(manifest)
        outcome = await self._run(tenant, manifest, row.archive, spec, arguments, principal)
        record = CapsuleExecutionRow(
            id=new_id("cx"),
            tenant_id=tenant,
            key_id=key_id,
            capsule=name,
            version=manifest.version,
            tool=spec.name,
            is_error=outcome.is_error,
            error=outcome.error,
            duration_ms=round(outcome.duration_ms, 3),
            sandbox_tier=outcome.sandbox_tier,
        )
        async with self.sessions() as session, session.begin():
            session.add(record)
        return execution_public(record, outcome)

    async def _run(
        self,
        tenant: str,
        manifest: Manifest,
        archive: bytes,
        tool: ToolSpec,
        arguments: dict[str, Any],
        principal: Principal | None,
    ) -> Outcome:
        if manifest.kind == "builtin":
            return await self.hosted.call(
                manifest.name,
                tool,
                arguments,
                tenant=tenant,
                timeout_s=manifest.permissions.timeout_s,
                who=principal,
            )
        if manifest.url is not None:
            return await self.remote.call(manifest, tool, arguments)
        return await self.runner.call(
            manifest, archive, tool, arguments, check_pins=manifest.kind == "mcp"
        )

    async def executions(
        self, tenant: str, *, capsule: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[Execution], str | None]:
        """The tenant's recorded executions, newest first, a page at a time."""
        query = select(CapsuleExecutionRow).where(CapsuleExecutionRow.tenant_id == tenant)
        if capsule is not None:
            query = query.where(CapsuleExecutionRow.capsule == capsule)
        if cursor is not None:
            query = query.where(CapsuleExecutionRow.id < str(decode_cursor(cursor, str)))
        query = query.order_by(CapsuleExecutionRow.id.desc()).limit(limit + 1)
        async with self.sessions() as session:
            rows = list((await session.scalars(query)).all())
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].id) if more and rows else None
        return [execution_public(row, None) for row in rows], next_cursor
