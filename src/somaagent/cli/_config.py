"""Where ``soma login`` keeps credentials, and which key and URL a command uses.

The key comes from, in order: the ``--api-key`` option, the ``SOMA_API_KEY`` environment
variable, the credentials file. The base URL likewise: ``--base-url``, ``SOMA_BASE_URL``, the
file, then the local default. The file is ``credentials.json`` in
``platformdirs.user_config_dir("somaagent")`` (or ``SOMA_CONFIG_DIR``), readable by its owner only.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import click

from somaagent.cli import _render
from somaagent.cli._render import EXIT_AUTH, CliError
from somaagent.sdk import Client, RetryEvent
from somaagent.sdk._base import API_KEY_ENV, BASE_URL_ENV, DEFAULT_BASE_URL
from somaagent.sdk._credentials import (
    CONFIG_DIR_ENV,
    CREDENTIALS_FILE,
    StoredCredentials,
    config_dir,
    credentials_path,
    load_credentials,
)

__all__ = [
    "CONFIG_DIR_ENV",
    "CREDENTIALS_FILE",
    "CliState",
    "Resolved",
    "StoredCredentials",
    "config_dir",
    "credentials_path",
    "delete_credentials",
    "load_credentials",
    "pass_state",
    "resolve",
    "save_credentials",
]

Source = Literal["option", "environment", "config file", "default"]


def save_credentials(*, api_key: str, base_url: str) -> Path:
    """Write the credentials file (mode 0600, in a 0700 directory); returns its path."""
    path = credentials_path()
    directory = path.parent
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True)
        directory.chmod(0o700)  # mkdir's mode is masked by the umask
    data = json.dumps({"api_key": api_key, "base_url": base_url}, indent=2) + "\n"
    # Write a private file beside the old one, then rename it over: the key is never readable
    # by others, not even for a moment, and a crash leaves the old file whole. The new file
    # replaces any old one, so a file with a looser mode is fixed too.
    tmp = directory / f".{CREDENTIALS_FILE}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            if hasattr(os, "fchmod"):  # not on Windows
                os.fchmod(file.fileno(), 0o600)  # whatever the umask
            file.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def delete_credentials() -> bool:
    """Remove the credentials file; whether there was one."""
    try:
        credentials_path().unlink()
    except FileNotFoundError:
        return False
    return True


@dataclass(frozen=True)
class Resolved:
    """The key and base URL a command uses, and where each came from."""

    base_url: str
    base_url_source: Source
    api_key: str | None
    key_source: Source | None

    def require_key(self) -> str:
        """The API key; a "not logged in" error (exit code 4) when there is none."""
        if self.api_key is None:
            raise CliError(
                f"not logged in: run `soma login`, set {API_KEY_ENV}, or pass --api-key",
                exit_code=EXIT_AUTH,
            )
        return self.api_key

    def client(self) -> Client:
        """An SDK client for this key and URL that says on stderr when it waits to retry."""
        return Client(api_key=self.require_key(), base_url=self.base_url, on_retry=_say_retry)


def _say_retry(event: RetryEvent) -> None:
    # A wait of several seconds with no word looks like a hang (a 429's Retry-After).
    _render.note(event.describe())


def resolve(*, api_key: str | None, base_url: str | None) -> Resolved:
    """Resolve the key and base URL from the options, the environment and the file."""
    stored: StoredCredentials | None = None

    def from_file() -> StoredCredentials:
        nonlocal stored
        if stored is None:
            stored = load_credentials()
        return stored

    key: str | None
    key_source: Source | None
    if api_key:
        key, key_source = api_key, "option"
    elif os.environ.get(API_KEY_ENV):
        key, key_source = os.environ[API_KEY_ENV], "environment"
    elif from_file().get("api_key"):
        key, key_source = from_file()["api_key"], "config file"
    else:
        key, key_source = None, None

    url_source: Source
    if base_url:
        url, url_source = base_url, "option"
    elif os.environ.get(BASE_URL_ENV):
        url, url_source = os.environ[BASE_URL_ENV], "environment"
    elif from_file().get("base_url"):
        url, url_source = from_file()["base_url"], "config file"
    else:
        url, url_source = DEFAULT_BASE_URL, "default"
    return Resolved(url.rstrip("/"), url_source, key, key_source)


@dataclass
class CliState:
    """The global options, carried on the click context to every command."""

    api_key: str | None = None
    base_url: str | None = None

    def resolve(self) -> Resolved:
        """The key and base URL for this invocation."""
        return resolve(api_key=self.api_key, base_url=self.base_url)


pass_state = click.make_pass_decorator(CliState, ensure=True)
"""Decorator handing a command the :class:`CliState` of its invocation."""
