"""``soma serve``: run the gateway with uvicorn on the embedded default."""

from __future__ import annotations

import asyncio

import click

from somaagent.cli._extras import missing_extra
from somaagent.cli._render import CliError
from somaagent.errors import SomaAgentError


@click.command()
@click.option("--host", default=None, help="Interface to bind (default SOMA_HOST or 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default SOMA_PORT or 8080).")
@click.option("--log-level", default=None, help="uvicorn log level (default SOMA_LOG_LEVEL).")
def serve(host: str | None, port: int | None, log_level: str | None) -> None:
    """Run the SomaAgent gateway."""
    try:
        from somaagent.gateway.settings_errors import load_settings
    except ModuleNotFoundError as exc:
        raise missing_extra(exc, command="serve") from None
    try:
        settings = load_settings()  # first: a bad setting is the likelier mistake
    except SomaAgentError as exc:
        raise CliError(str(exc)) from None
    try:
        import uvicorn

        from somaagent.db.engine import make_engine, migrate
        from somaagent.gateway.app import create_app
    except ModuleNotFoundError as exc:
        raise missing_extra(exc, command="serve") from None

    async def prepare_database() -> None:
        engine = make_engine(settings.resolved_database_url)
        try:
            await migrate(engine)
        finally:
            await engine.dispose()

    try:
        # A missing database driver (asyncpg: the postgres extra), an unreachable database or
        # one whose schema cannot be migrated is met here, as one line, rather than in the
        # app's lifespan under a uvicorn traceback (the lifespan's own migration then finds
        # nothing to do).
        asyncio.run(prepare_database())
        app = create_app(settings)
    except SomaAgentError as exc:
        raise CliError(str(exc)) from None
    host = host or settings.host
    port = port if port is not None else settings.port
    click.echo(f"SomaAgent gateway on http://{host}:{port}  (data: {settings.data_dir})", err=True)
    click.echo(f"  database: {_safe_url(settings.resolved_database_url)}", err=True)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level or settings.log_level,
        proxy_headers=True,
    )


def _safe_url(url: str) -> str:
    """The URL without its password, for display."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
