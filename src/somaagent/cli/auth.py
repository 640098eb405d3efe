"""``soma login``, ``soma logout`` and ``soma auth status``."""

from __future__ import annotations

import os

import click

from somaagent.cli import _render
from somaagent.cli._config import (
    CliState,
    Resolved,
    Source,
    credentials_path,
    delete_credentials,
    pass_state,
    resolve,
    save_credentials,
)
from somaagent.cli._render import EXIT_AUTH, CliError
from somaagent.errors import (
    APIConnectionError,
    AuthenticationError,
    ConfigurationError,
    PermissionDeniedError,
)
from somaagent.sdk import Client, Identity
from somaagent.sdk._base import API_KEY_ENV, BASE_URL_ENV, resolve_base_url

_SOURCES: dict[Source, str] = {
    "option": "the --api-key option",
    "environment": f"the environment ({API_KEY_ENV})",
    "config file": "the config file",
    "default": "the default",
}
_URL_SOURCES: dict[Source, str] = {
    **_SOURCES,
    "option": "the --base-url option",
    "environment": f"the environment ({BASE_URL_ENV})",
}


def key_prefix(key: str) -> str:
    """The start of a key, enough to recognise it and never enough to use it."""
    shown = key[: min(12, len(key) // 2)]
    return f"{shown}…"


@click.command()
@click.option("--base-url", metavar="URL", help="The gateway to log in to.")
@click.option("--api-key", metavar="KEY", help="The key (prompted for, hidden, when omitted).")
@click.option("--no-verify", is_flag=True, help="Save without checking the key with the gateway.")
@pass_state
def login(state: CliState, base_url: str | None, api_key: str | None, no_verify: bool) -> None:
    """Save an API key (checked against the gateway first) for later commands."""
    try:
        url = resolve_base_url(resolve(api_key=None, base_url=base_url or state.base_url).base_url)
    except ConfigurationError:  # an unreadable credentials file: logging in again fixes it
        url = resolve_base_url(base_url or state.base_url)
    key = (api_key or state.api_key or click.prompt("API key", hide_input=True)).strip()
    if not key:
        raise click.UsageError("the API key is empty")
    identity: Identity | None = None
    if not no_verify:
        with Client(api_key=key, base_url=url) as client:
            try:
                identity = client.me()
            except AuthenticationError as exc:
                raise CliError(
                    f"the gateway at {url} refused this key ({exc.message}); nothing was saved",
                    exit_code=EXIT_AUTH,
                ) from exc
            except APIConnectionError as exc:
                raise CliError(
                    f"{exc}; nothing was saved (use --no-verify to save the key unchecked)"
                ) from exc
    path = save_credentials(api_key=key, base_url=url)
    who = ""
    if identity is not None:
        who = f" as {identity['name']} (tenant {identity['tenant']}, {identity['scope']})"
    _render.success(f"Logged in to {url}{who}; key saved to {path}")
    if os.environ.get(API_KEY_ENV) and os.environ[API_KEY_ENV] != key:
        _render.note(f"note: {API_KEY_ENV} is set and takes precedence over the saved key")


@click.command()
def logout() -> None:
    """Forget the API key saved by `soma login`."""
    path = credentials_path()
    if delete_credentials():
        _render.success(f"Logged out; removed {path}")
    else:
        _render.note(f"not logged in (no {path})")
    if os.environ.get(API_KEY_ENV):
        _render.note(f"note: {API_KEY_ENV} is still set in this environment")


@click.group()
def auth() -> None:
    """Inspect the credentials in use."""


@auth.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def status(state: CliState, as_json: bool) -> None:
    """Show the gateway, where the key comes from, and whom it identifies.

    Exits with 4 when there is no key or the gateway refuses it, and 1 when the gateway
    cannot be reached.
    """
    resolved = state.resolve()
    identity: Identity | None = None
    problem: CliError | None = None
    try:
        with resolved.client() as client:
            identity = client.me()
    except CliError as exc:  # no key at all
        problem = exc
    except (AuthenticationError, PermissionDeniedError) as exc:
        message = f"the gateway refused this key: {_render.describe(exc)}"
        problem = CliError(message, exit_code=EXIT_AUTH)
    except APIConnectionError as exc:
        problem = CliError(str(exc))
    if as_json:
        _render.as_json(_status_json(resolved, identity))
    else:
        _render.key_value(_status_rows(resolved, identity))
    if problem is not None:
        raise problem


def _status_json(resolved: Resolved, identity: Identity | None) -> dict[str, object]:
    return {
        "base_url": resolved.base_url,
        "base_url_source": resolved.base_url_source,
        "key_source": resolved.key_source,
        "key_prefix": key_prefix(resolved.api_key) if resolved.api_key else None,
        "identity": dict(identity) if identity is not None else None,
    }


def _status_rows(resolved: Resolved, identity: Identity | None) -> list[tuple[str, str]]:
    key = "none"
    if resolved.api_key and resolved.key_source:
        key = f"{key_prefix(resolved.api_key)} (from {_SOURCES[resolved.key_source]})"
    rows = [
        ("Gateway", f"{resolved.base_url} (from {_URL_SOURCES[resolved.base_url_source]})"),
        ("API key", key),
    ]
    if identity is not None:
        rows += [
            ("Tenant", identity["tenant"]),
            ("Scope", identity["scope"]),
            ("Key", f"{identity['name']} ({identity['key_id']})"),
        ]
    return rows


__all__ = ["auth", "login", "logout"]
