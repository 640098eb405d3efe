"""``soma admin``: operator commands that work on the configured database directly, so an
operator can bootstrap keys without a running server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from somaagent.cli._extras import missing_extra
from somaagent.cli._render import CliError
from somaagent.errors import SomaAgentError

T = TypeVar("T")


def _run(action: Callable[..., Awaitable[T]]) -> T:
    try:
        from sqlalchemy.ext.asyncio import AsyncSession

        from somaagent.db.engine import make_engine, make_sessionmaker, migrate
        from somaagent.gateway.settings_errors import load_settings
    except ModuleNotFoundError as exc:
        raise missing_extra(exc, command="admin") from None
    try:
        settings = load_settings()
    except SomaAgentError as exc:
        raise CliError(str(exc)) from None

    async def main() -> T:
        engine = make_engine(settings.resolved_database_url)
        try:
            await migrate(engine)
            session: AsyncSession
            async with make_sessionmaker(engine)() as session:
                return await action(session)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except SomaAgentError as exc:
        raise CliError(str(getattr(exc, "message", exc))) from exc


@click.group()
def admin() -> None:
    """Operator commands on the configured database (SOMA_DATABASE_URL / SOMA_DATA_DIR)."""


@admin.group()
def keys() -> None:
    """Create, list and revoke API keys."""


@keys.command("create")
@click.option("--name", required=True, help="What the key is for.")
@click.option("--tenant", default="default", show_default=True, help="Tenant the key belongs to.")
@click.option(
    "--scope", type=click.Choice(["admin", "member"]), default="member", show_default=True
)
@click.option("--budget", type=float, default=None, help="Monthly budget in USD (default: none).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON; the secret is under `key`.")
def create_key(name: str, tenant: str, scope: str, budget: float | None, as_json: bool) -> None:
    """Create an API key. The secret is shown only once."""
    from somaagent.accounts import keys as key_store

    info, secret = _run(
        lambda s: key_store.create_key(
            s, name=name, tenant=tenant, scope=scope, monthly_budget_usd=budget
        )
    )
    if as_json:
        click.echo(json.dumps({**info.model_dump(mode="json"), "key": secret}))
        return
    click.echo(f"Created key {info.id} ({info.scope}) for tenant {info.tenant}.")
    click.echo("Store it now; it cannot be shown again:")
    click.echo(f"  {secret}")


@keys.command("list")
@click.option("--tenant", default=None, help="Only this tenant's keys.")
@click.option("--json", "as_json", is_flag=True)
def list_keys(tenant: str | None, as_json: bool) -> None:
    """List keys (never their secrets)."""
    from somaagent.accounts import keys as key_store

    infos = _run(lambda s: key_store.list_keys(s, tenant=tenant))
    if as_json:
        click.echo(json.dumps([i.model_dump(mode="json") for i in infos]))
        return
    from rich.table import Table

    from somaagent.cli._render import print_table

    table = Table("id", "name", "tenant", "scope", "prefix", "created", "revoked")
    for i in infos:
        table.add_row(
            i.id,
            i.name,
            i.tenant,
            i.scope,
            i.prefix + "…",
            f"{i.created_at:%Y-%m-%d %H:%M}",
            f"{i.revoked_at:%Y-%m-%d %H:%M}" if i.revoked_at else "",
        )
    print_table(table)  # never cuts an id: it is what `keys revoke` takes


@keys.command("revoke")
@click.argument("key_id")
@click.option("--json", "as_json", is_flag=True)
def revoke_key(key_id: str, as_json: bool) -> None:
    """Revoke a key by its id (or its displayed prefix)."""
    from somaagent.accounts import keys as key_store

    info = _run(lambda s: key_store.revoke_key(s, key_id))
    if as_json:
        click.echo(json.dumps(info.model_dump(mode="json")))
        return
    click.echo(f"Revoked {info.id} ({info.name}).")


@keys.command("budget")
@click.argument("key_id")
@click.argument("usd", required=False, type=float)
@click.option("--none", "remove", is_flag=True, help="Remove the key's budget.")
@click.option("--json", "as_json", is_flag=True)
def budget_key(key_id: str, usd: float | None, remove: bool, as_json: bool) -> None:
    """Set a key's monthly budget in USD (or remove it with --none)."""
    from somaagent.accounts import keys as key_store

    if (usd is None) == (not remove):
        raise click.UsageError("give a budget in USD, or --none")
    info = _run(lambda s: key_store.set_budget(s, key_id, None if remove else usd))
    if as_json:
        click.echo(json.dumps(info.model_dump(mode="json")))
        return
    shown = (
        "no budget" if info.monthly_budget_usd is None else f"${info.monthly_budget_usd:.2f}/month"
    )
    click.echo(f"{info.id} ({info.name}): {shown}")
