"""One-line errors for what a plain ``pip install somaagent`` leaves out, and bad settings.

A command that needs an extra imports the extra's code inside the command; when a module is
missing, the ``soma`` group turns the ``ModuleNotFoundError`` into one line naming the extra
(``pip install 'somaagent[server]'``) instead of a traceback. The gateway's settings are read
here too, so that a bad ``SOMA_*`` value (``SOMA_PORT=abc``) is one line naming the setting
and its fix, at ``soma serve`` and ``soma admin`` alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from somaagent.cli._render import CliError

if TYPE_CHECKING:
    import pydantic

    from somaagent.gateway.settings import Settings

__all__ = ["extra_for_module", "install_hint", "load_settings", "missing_extra", "settings_error"]

# The top-level modules of each extra's packages that the CLI's commands import. A module not
# listed belongs to the server extra, the one most commands need.
_MODULE_EXTRAS: dict[str, str] = {
    "kubernetes": "sre",
    "jsonschema": "sre",
    "k6": "sre",
    "asyncpg": "postgres",
    "qdrant_client": "qdrant",
    "pinecone": "pinecone",
    "llama_cpp": "local-compiled",
    "xllamacpp": "local",
}
_SECRET_HINTS = ("key", "secret", "password", "token", "database_url")


def extra_for_module(module: str | None) -> str:
    """The extra that installs ``module`` (a dotted name; its top level decides)."""
    top = (module or "").split(".")[0]
    return _MODULE_EXTRAS.get(top, "server")


def install_hint(extra: str) -> str:
    """The command that installs ``extra``."""
    return f"pip install 'somaagent[{extra}]'"


def missing_extra(exc: ModuleNotFoundError, *, command: str | None = None) -> CliError:
    """The one-line error for a module that an extra would have installed.

    Raises:
        ModuleNotFoundError: ``exc`` itself when the missing module is SomaAgent's own: that is
            a bug, not a missing extra, and keeps its traceback.
    """
    if (exc.name or "").split(".")[0] == "somaagent":
        raise exc
    extra = extra_for_module(exc.name)
    what = f"`soma {command}`" if command else "this command"
    return CliError(
        f"{what} needs the {extra} extra ({exc.name or 'a module'} is missing): "
        f"{install_hint(extra)}"
    )


def load_settings(command: str) -> Settings:
    """The gateway's settings from the environment (and ``.env``), for ``soma COMMAND``.

    Raises:
        CliError: the server extra is missing, or a setting is invalid (one line naming it).
    """
    import pydantic

    try:
        from somaagent.gateway.settings import Settings
    except ModuleNotFoundError as exc:
        raise missing_extra(exc, command=command) from None
    try:
        return Settings()
    except pydantic.ValidationError as exc:
        raise CliError(settings_error(exc)) from None


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
