"""The credentials ``soma login`` stores, read by the SDK and written by the CLI.

The file is ``credentials.json`` in ``platformdirs.user_config_dir("somaagent")`` (or the
folder ``SOMA_CONFIG_DIR`` names), readable by its owner only: ``{"api_key": ..., "base_url":
...}``. :class:`~somaagent.Client` falls back to it after its arguments and the environment,
so a script run after ``soma login`` needs no key of its own.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TypedDict

from somaagent.errors import ConfigurationError

__all__ = [
    "CONFIG_DIR_ENV",
    "CREDENTIALS_FILE",
    "StoredCredentials",
    "config_dir",
    "credentials_path",
    "load_credentials",
]

CONFIG_DIR_ENV = "SOMA_CONFIG_DIR"
CREDENTIALS_FILE = "credentials.json"


class StoredCredentials(TypedDict, total=False):
    """The contents of ``credentials.json``."""

    api_key: str
    base_url: str


def config_dir() -> Path:
    """The folder of SomaAgent's client configuration."""
    override = os.environ.get(CONFIG_DIR_ENV)
    if override:
        return Path(override)
    import platformdirs  # late: only a client without a key or URL needs it

    return Path(platformdirs.user_config_dir("somaagent"))


def credentials_path() -> Path:
    """The credentials file ``soma login`` writes."""
    return config_dir() / CREDENTIALS_FILE


def load_credentials() -> StoredCredentials:
    """The stored credentials; empty when there is no file.

    Raises:
        ConfigurationError: the file exists but cannot be read as credentials.
    """
    path = credentials_path()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return StoredCredentials()
    except (OSError, ValueError) as exc:
        raise ConfigurationError(
            f"cannot read {path} ({exc}); run `soma login` again or delete the file"
        ) from exc
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{path} is not a JSON object; run `soma login` again")
    stored = StoredCredentials()
    if isinstance(raw.get("api_key"), str) and raw["api_key"]:
        stored["api_key"] = raw["api_key"]
    if isinstance(raw.get("base_url"), str) and raw["base_url"]:
        stored["base_url"] = raw["base_url"]
    return stored
