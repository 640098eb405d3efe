"""``soma``: the SomaAgent command line, a thin Click + Rich layer over the SDK.

Exit codes: 0 success, 1 an error, 2 a usage error, 3 not found, 4 authentication (a refused
or missing key). Errors are one ``error: ...`` line on stderr, never a traceback.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from somaagent._version import __version__
from somaagent.cli import _render
from somaagent.cli._config import CliState
from somaagent.cli._extras import install_hint, missing_extra
from somaagent.cli._render import CliError
from somaagent.cli.auth import auth, login, logout
from somaagent.cli.capsule import capsule
from somaagent.cli.chat import chat
from somaagent.cli.conversations import conversations
from somaagent.cli.feedback import feedback, route
from somaagent.cli.memory import memory
from somaagent.cli.models import models
from somaagent.cli.prompts import prompts
from somaagent.cli.workflow import workflow
from somaagent.errors import SomaAgentError

# Commands that need an extra: imported only when used, so the client-side CLI works (and
# starts fast) without them. name -> (module, attribute, short help, extra)
_LAZY: dict[str, tuple[str, str, str, str]] = {
    "serve": ("somaagent.cli.serve", "serve", "Run the SomaAgent gateway.", "server"),
    "admin": (
        "somaagent.cli.admin",
        "admin",
        "Administer the gateway: API keys, tenants.",
        "server",
    ),
    "chaos": (
        "somaagent.cli.chaos",
        "chaos",
        "Chaos experiments: Chaos Mesh and local faults.",
        "sre",
    ),
    "loadtest": ("somaagent.cli.loadtest", "loadtest", "k6 load tests.", "sre"),
    "sre": ("somaagent.cli.sre", "sre", "Resilience checks judged by the SLOs.", "sre"),
    "slo": (
        "somaagent.cli.slo",
        "slo",
        "Service level objectives: status, budget report, Prometheus rules, dashboards.",
        "sre",
    ),
}


class SomaGroup(click.Group):
    """The ``soma`` group: loads server commands lazily, turns SDK errors into exit codes."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _LAZY and cmd_name not in self.commands:
            return _load(cmd_name, *_LAZY[cmd_name])
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SomaAgentError as exc:
            raise CliError(_render.describe(exc), exit_code=_render.exit_code_for(exc)) from exc
        except ModuleNotFoundError as exc:
            # A command reached for code of an extra that is not installed (a missing module
            # of SomaAgent itself is a bug: missing_extra raises it again, traceback and all).
            raise missing_extra(exc, command=ctx.invoked_subcommand) from None


def _load(
    name: str, module_name: str, attribute: str, short_help: str, extra: str
) -> click.Command:
    install = install_hint(extra)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            reason = f"`soma {name}` is not part of this installation"
        else:
            reason = f"`soma {name}` needs the {extra} extra ({exc.name} is missing)"
        return _unavailable(name, f"{reason}: {install}", short_help, extra)
    command = getattr(module, attribute)
    if not isinstance(command, click.Command):  # pragma: no cover - a packaging mistake
        raise TypeError(f"{module_name}.{attribute} is not a click command")
    return command


def _unavailable(name: str, message: str, short_help: str, extra: str) -> click.Command:
    def fail(args: tuple[str, ...]) -> None:
        raise CliError(message)

    return click.Command(
        name,
        callback=fail,
        params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)],
        short_help=f"{short_help} (needs the {extra} extra)",
        help=message,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        add_help_option=False,
    )


@click.group(name="soma", cls=SomaGroup)
@click.option(
    "--base-url",
    metavar="URL",
    help="Gateway URL (default: SOMA_BASE_URL, then `soma login`'s, then http://127.0.0.1:8080).",
)
@click.option(
    "--api-key",
    metavar="KEY",
    help="API key (default: SOMA_API_KEY, then the key saved by `soma login`).",
)
@click.version_option(__version__, "--version", "-V", prog_name="soma")
@click.pass_context
def main(ctx: click.Context, base_url: str | None, api_key: str | None) -> None:
    """SomaAgent: one gateway for many language models."""
    ctx.obj = CliState(api_key=api_key, base_url=base_url)


main.add_command(login)
main.add_command(logout)
main.add_command(auth)
main.add_command(chat)
main.add_command(conversations)
main.add_command(prompts)
main.add_command(memory)
main.add_command(models)
main.add_command(route)
main.add_command(feedback)
main.add_command(workflow)
main.add_command(capsule)

__all__ = ["main"]
