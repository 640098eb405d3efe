"""One-line errors for what a plain ``pip install somaagent`` leaves out.

A command that needs an extra imports the extra's code inside the command; when a module is
missing, the ``soma`` group turns the ``ModuleNotFoundError`` into one line naming the extra
(``pip install 'somaagent[server]'``) instead of a traceback. (A bad ``SOMA_*`` setting is one
line too, at ``soma serve`` and ``soma admin``: the server's own settings loader says which
setting and how to fix it.)
"""

from __future__ import annotations

from somaagent.cli._render import CliError

__all__ = ["extra_for_module", "install_hint", "missing_extra"]

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
