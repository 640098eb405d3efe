"""``soma route``: explain which model the router would choose for a prompt, and why.

Nothing is sent to any model: the gateway's ``POST /v1/route`` answers with the decision, which
is shown as the chosen model and the reason above a table of every candidate (or, with
``--json``, as the decision itself).
"""

from __future__ import annotations

import json
import sys
from typing import Any, get_args

import click

from somaagent.cli import _render
from somaagent.cli._config import CliState, pass_state
from somaagent.types import RouteCapability

__all__ = ["policy_from_options", "route"]


def policy_from_options(
    policy_json: str | None,
    *,
    min_quality: float | None = None,
    max_cost: float | None = None,
    max_latency: float | None = None,
    capabilities: tuple[str, ...] = (),
    providers: tuple[str, ...] = (),
) -> dict[str, Any] | None:
    """The policy to send: ``--policy-json``, with the options given on top of it.

    The result is sent as it is, so the gateway names any unknown or invalid field.

    Raises:
        click.BadParameter: ``--policy-json`` is not a JSON object.
    """
    policy: dict[str, Any] = {}
    if policy_json is not None:
        try:
            parsed = json.loads(policy_json)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON ({exc})", param_hint="--policy-json") from None
        if not isinstance(parsed, dict):
            raise click.BadParameter(
                "expected a JSON object, e.g. '{\"min_quality\": 0.9}'",
                param_hint="--policy-json",
            )
        policy.update(parsed)
    options: dict[str, Any] = {
        "min_quality": min_quality,
        "max_cost_usd": max_cost,
        "max_latency_ms": max_latency,
        "capabilities": list(capabilities) or None,
        "providers": list(providers) or None,
    }
    policy.update({k: v for k, v in options.items() if v is not None})
    return policy or None


@click.command()
@click.argument("prompt")
@click.option(
    "--policy-json",
    metavar="JSON",
    help='A routing policy as a JSON object, e.g. \'{"min_quality": 0.9, "task": "math"}\'; '
    "the options below override its fields.",
)
@click.option(
    "--min-quality",
    type=click.FloatRange(0.0, 1.0),
    metavar="F",
    help="The predicted quality (0-1) the model must reach.",
)
@click.option("--max-cost", type=float, metavar="USD", help="The most the call may cost (USD).")
@click.option(
    "--max-latency", type=float, metavar="MS", help="The most the call may take (milliseconds)."
)
@click.option(
    "--capability",
    "capabilities",
    multiple=True,
    type=click.Choice(get_args(RouteCapability)),
    help="A capability the model must have (repeatable).",
)
@click.option(
    "--provider",
    "providers",
    multiple=True,
    metavar="P",
    help="Only models of this provider (repeatable).",
)
@click.option(
    "--max-tokens",
    type=click.IntRange(min=1),
    metavar="N",
    help="The most tokens the answer may have (it bounds the cost estimate).",
)
@click.option(
    "--all",
    "show_all",
    is_flag=True,
    help="List the excluded models too (by default only the eligible ones are listed).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the decision as JSON.")
@pass_state
def route(
    state: CliState,
    prompt: str,
    policy_json: str | None,
    min_quality: float | None,
    max_cost: float | None,
    max_latency: float | None,
    capabilities: tuple[str, ...],
    providers: tuple[str, ...],
    max_tokens: int | None,
    show_all: bool,
    as_json: bool,
) -> None:
    """Show which model the router would choose for PROMPT (`-` reads it from stdin), and why.

    No model is called. The table lists the eligible models with their predicted quality,
    estimated cost and latency, and why each was chosen or passed over; --all adds the models a
    constraint (or a missing provider key) excluded, and why:

        soma route "Prove that sqrt(2) is irrational" --max-cost 0.01 --provider openai
    """
    if prompt == "-":
        prompt = sys.stdin.read().strip()
    if not prompt.strip():
        raise click.UsageError("the prompt is empty")
    policy = policy_from_options(
        policy_json,
        min_quality=min_quality,
        max_cost=max_cost,
        max_latency=max_latency,
        capabilities=capabilities,
        providers=providers,
    )
    with state.resolve().client() as client:
        decision = client.route(prompt, policy=policy, max_tokens=max_tokens)
    if as_json:
        _render.as_json(decision)
    else:
        _render.route_decision(decision, show_all=show_all)
