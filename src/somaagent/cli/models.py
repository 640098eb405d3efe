"""``soma models``: the models the gateway can route to, with their prices."""

from __future__ import annotations

import click

from somaagent.cli import _render
from somaagent.cli._config import CliState, pass_state

__all__ = ["models"]


@click.command()
@click.option(
    "--all",
    "show_all",
    is_flag=True,
    help="List the whole registry, with the models whose provider is not configured here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the models as JSON.")
@pass_state
def models(state: CliState, show_all: bool, as_json: bool) -> None:
    """List the models you can chat with, with their prices per million tokens.

    Use a name with `soma chat --model NAME`, or `auto` to let the router pick.
    """
    with state.resolve().client() as client:
        listed = client.models.list()
    if as_json:
        shown = [m for m in listed if show_all or m.available]
        _render.as_json([m.model_dump(mode="json") for m in shown])
    else:
        _render.models_table(listed, show_all=show_all)
