"""``soma feedback ID up|down``, ``soma route train`` and ``soma route report``.

``soma route`` becomes a group whose default command is the existing explanation
(``soma route "prompt"`` still works); ``train`` and ``report`` are its subcommands.
"""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from somaagent.cli import _render
from somaagent.cli._config import CliState, pass_state
from somaagent.cli.route import route as explain
from somaagent.sdk._feedback import RouteReport

__all__ = ["RouteGroup", "feedback", "route"]


class RouteGroup(click.Group):
    """A group that runs ``explain`` when the first argument names no subcommand."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["explain", *args]
        return super().parse_args(ctx, args)


@click.command()
@click.argument("answer_id", metavar="ID")
@click.argument("rating", type=click.Choice(["up", "down"]), required=False)
@click.option("--score", type=click.FloatRange(0.0, 1.0), help="A score from 0 to 1 instead.")
@click.option("--comment", metavar="TEXT", help="A note kept with the rating.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_state
def feedback(
    state: CliState,
    answer_id: str,
    rating: str | None,
    score: float | None,
    comment: str | None,
    as_json: bool,
) -> None:
    """Rate a routed answer: ID is the reply's message id (or a completion id).

    soma feedback msg_0a1b2c up
    """
    if (rating is None) == (score is None):
        raise click.UsageError("give a rating (up or down) or --score, not both")
    with state.resolve().client() as client:
        result = client.feedback(
            answer_id,
            "up" if rating == "up" else "down" if rating == "down" else None,
            score=score,
            comment=comment,
        )
    if as_json:
        _render.as_json(result)
    else:
        _render.success(f"rated {result.id} ({result.model}): {result.score:g}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_state
def train(state: CliState, as_json: bool) -> None:
    """Fit the router on your feedback; the new heads are used only if they do better.

    Prints the held-out error (Brier score) before and after; too little feedback is an
    error that says how much is needed.
    """
    with state.resolve().client() as client:
        result = client.route_train()
    if as_json:
        _render.as_json(result)
        return
    _render.key_value(
        [
            ("rated answers", str(result.rated)),
            ("trained on / held out", f"{result.trained_on} / {result.held_out}"),
            ("models with own heads", ", ".join(f"{m} ({n})" for m, n in result.models.items())),
            ("held-out error before", str(result.before.get("brier"))),
            ("held-out error after", str(result.after.get("brier"))),
        ]
    )
    (_render.success if result.promoted else _render.note)(result.message)


def _pct(value: Any) -> str:
    return "-" if value is None else f"{value:.0%}"


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _scores(rated: int, mean: float | None) -> str:
    return "-" if not rated else f"{mean:.2f} ({rated})"


def _periods_table(result: RouteReport) -> Table:
    """Cost and quality before and after the tenant's heads: did its own traffic pay off?"""
    periods = result.periods
    split = (
        f"heads trained {periods.split_at[:16].replace('T', ' ')} UTC"
        if periods.split_at
        else "no heads yet: soma route train"
    )
    table = Table(
        "period",
        "routed",
        "cost",
        "per answer",
        "reference",
        "savings",
        "score (n)",
        "explicit",
        "shadow",
        title=f"before / after your router heads ({split})",
    )
    for label, p in (("before heads", periods.before_heads), ("after heads", periods.after_heads)):
        table.add_row(
            label,
            str(p.routed),
            f"${p.cost_usd:.6f}",
            "-" if p.cost_per_answer_usd is None else f"${p.cost_per_answer_usd:.6f}",
            f"${p.reference_cost_usd:.6f}",
            _pct(p.savings_realised),
            _scores(p.rated, p.mean_score),
            _scores(p.explicit.rated, p.explicit.mean_score),
            _scores(p.shadow.rated, p.shadow.mean_score),
        )
    return table


def _comparison(result: RouteReport) -> str:
    change = result.periods.comparison
    if not change:
        return "not yet: it needs answers routed both before and after your heads"
    cost_change, score_change = (
        change.get("cost_per_answer_change"),
        change.get("mean_score_change"),
    )
    cost_text = "-" if cost_change is None else f"{cost_change:+.0%} cost per answer"
    score_text = (
        "no rated answers on both sides"
        if score_change is None
        else f"{score_change:+.2f} mean score"
    )
    return f"{cost_text}, {score_text}"


def _shadow(result: RouteReport) -> str:
    shadow = result.shadow
    if shadow is None:
        return f"off (judge spend so far ${result.judge_cost_usd:.6f})"
    return (
        f"{shadow['rate']:.0%} of cheaper answers judged by {shadow['judge']}; "
        f"${shadow['spent_today_usd']:.6f} of ${shadow['budget_usd']:.2f} today "
        f"({shadow['judged']} judged, {shadow['unparseable']} unreadable, "
        f"{shadow['failed']} failed, {shadow['over_budget']} over budget, "
        f"{shadow.get('in_flight', 0)} in flight), ${result.judge_cost_usd:.6f} in all"
    )


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_state
def report(state: CliState, as_json: bool) -> None:
    """Your routing: per-model win rates, savings realised, cost and quality before and after
    your router heads (explicit ratings and shadow-judge scores apart), and your heads."""
    with state.resolve().client() as client:
        result = client.route_report()
    if as_json:
        _render.as_json(result)
        return
    table = Table("model", "calls", "rated", "win rate", "mean score", "cost", "reference cost")
    for name, m in sorted(result.models.items(), key=lambda kv: -kv[1]["calls"]):
        table.add_row(
            name,
            str(m["calls"]),
            str(m["rated"]),
            _pct(m.get("win_rate")),
            _score(m.get("mean_score")),
            f"${m['cost_usd']:.6f}",
            f"${m['reference_cost_usd']:.6f}",
        )
    _render.print_table(table)
    _render.print_table(_periods_table(result))
    heads = result.heads
    _render.key_value(
        [
            (
                "routed / rated",
                f"{result.routed} / {result.rated} "
                f"({result.rated_explicit} by you, {result.rated_shadow} by the shadow judge)",
            ),
            ("after vs before your heads", _comparison(result)),
            ("shadow evaluation", _shadow(result)),
            ("savings realised", _pct(result.savings_realised) + " (vs the best-predicted model)"),
            ("win rate (score >= 0.5)", _pct(result.win_rate)),
            (
                "your heads",
                "none yet: soma route train"
                if heads is None
                else f"trained {heads.get('trained_at')}, held-out error "
                f"{heads.get('before', {}).get('brier')} -> {heads.get('after', {}).get('brier')}",
            ),
        ]
    )


route = RouteGroup(
    "route",
    commands={"explain": explain, "train": train, "report": report},
    help="Explain the router's choice for a prompt (soma route PROMPT), train it on your "
    "feedback (soma route train) and see how it did (soma route report).",
)
