"""Bad ``SOMA_*`` settings as one line naming each setting and its fix.

:func:`load_settings` is how a command line (``soma serve``, ``soma admin``) reads the
gateway's settings: a bad value (``SOMA_PORT=abc``) is a
:class:`~somaagent.errors.ConfigurationError` whose message names the setting and how to fix
it, instead of pydantic's multi-line report. Secret settings are named without their values.
"""

from __future__ import annotations

from typing import Any

import pydantic

from somaagent.errors import ConfigurationError
from somaagent.gateway.settings import Settings

__all__ = ["load_settings", "settings_error"]

_SECRET_HINTS = ("key", "secret", "password", "token", "database_url")


def load_settings() -> Settings:
    """The gateway's settings from the environment (and ``.env``).

    Raises:
        ConfigurationError: a setting is invalid (one line naming each bad one).
    """
    try:
        return Settings()
    except pydantic.ValidationError as exc:
        raise ConfigurationError(settings_error(exc)) from None


def settings_error(exc: pydantic.ValidationError) -> str:
    """One line naming each bad ``SOMA_*`` setting and how to fix it."""
    return "invalid settings: " + "; ".join(_one(error) for error in exc.errors())


def _one(error: Any) -> str:
    location = [str(part) for part in error.get("loc", ())]
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if not location:  # a rule across settings; its message names them
        return message + _cross_field_fix(message)
    name = "SOMA_" + location[0].upper()
    value = error.get("input")
    shown = name if any(h in name.lower() for h in _SECRET_HINTS) else f"{name}={value!r}"
    return f"{shown} is not valid ({message}): {_field_fix(error, name)}"


def _field_fix(error: Any, name: str) -> str:
    kind = str(error.get("type", ""))
    wanted = {
        "int_parsing": "a whole number",
        "int_type": "a whole number",
        "float_parsing": "a number",
        "float_type": "a number",
        "bool_parsing": "true or false",
        "bool_type": "true or false",
    }.get(kind)
    if wanted is None and kind == "literal_error":
        wanted = f"one of {error.get('ctx', {}).get('expected', 'the allowed values')}"
    if wanted is None:
        return f"correct {name} in the environment or .env, or unset it for the default"
    return f"set {name} to {wanted}, or unset it for the default"


def _cross_field_fix(message: str) -> str:
    if "SOMA_DATABASE_URL" in message:
        return (
            " (set SOMA_DATABASE_URL=postgresql+asyncpg://USER:PASSWORD@HOST/DB, "
            "or SOMA_MODE=local for the embedded SQLite)"
        )
    if "placeholder" in message:
        return " (or unset it)"
    return " (check the SOMA_ settings in the environment or .env)"
