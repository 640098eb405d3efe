"""``soma sre verify``: a load test with a local fault in the middle, judged by the SLOs."""

from __future__ import annotations

import os

import click
from rich.console import Console
from rich.markup import escape

from somaagent.cli import _render
from somaagent.cli._config import CliState, pass_state
from somaagent.cli.loadtest import MAX_RPS, max_rps_option, script_env
from somaagent.sre import children
from somaagent.sre.chaos.injectors import Via
from somaagent.sre.verify import VERIFY_PRESETS, VerifyReport, get_plan, run_verify

PROMETHEUS_ENV = "SOMA_PROMETHEUS_URL"
DEFAULT_PROMETHEUS = "http://127.0.0.1:9090"
EXIT_INTERRUPTED = 130


@click.group()
def sre() -> None:
    """Resilience checks that join load tests, faults and SLOs."""


@sre.command("verify")
@click.argument("preset", type=click.Choice(sorted(VERIFY_PRESETS)), metavar="PRESET")
@click.option(
    "--scale",
    type=click.FloatRange(0, 10, min_open=True),
    default=0.1,
    show_default=True,
    help="Multiply the load profile's durations.",
)
@click.option("--max-vus", type=click.IntRange(1), help="Cap the virtual users.")
@MAX_RPS
@click.option("--model", metavar="MODEL", help="The model chat requests ask for.")
@click.option("--think-time", type=click.FloatRange(0), help="Seconds between a VU's requests.")
@click.option("--prometheus", metavar="URL", help=f"Prometheus (default ${PROMETHEUS_ENV}).")
@click.option(
    "--via",
    type=click.Choice(["point", "proxy"]),
    help="Fault point in the gateway, or a fault proxy (default: the preset's fault point).",
)
@click.option("--listen", metavar="HOST:PORT", help="Where the fault proxy listens.")
@click.option("--upstream", metavar="HOST:PORT", help="The dependency the proxy fronts.")
@click.option(
    "--proxy-control", metavar="URL", help="Fault a running `soma chaos proxy` through this API."
)
@click.option("--env", "variables", multiple=True, metavar="NAME=VALUE", help="A script variable.")
@click.option("--collection", metavar="NAME", help="The memory collection the load searches.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_state
def verify(
    state: CliState,
    preset: str,
    scale: float,
    max_vus: int | None,
    max_rps: int | None,
    model: str | None,
    think_time: float | None,
    prometheus: str | None,
    via: Via | None,
    listen: str | None,
    upstream: str | None,
    proxy_control: str | None,
    variables: tuple[str, ...],
    collection: str | None,
    as_json: bool,
) -> None:
    """Run PRESET's load with its fault injected locally; judge the run by the SLOs.

    Presets: slm_service_failure, gateway_cpu_stress, memory_gateway_latency,
    vector_store_packet_loss. Exit status 1 when an SLO broke, 130 when interrupted (Ctrl-C
    or SIGTERM: the fault is rolled back and k6 stopped; neither outlives the command).
    """
    resolved = state.resolve()
    with resolved.client() as client, children.ended_on_exit():
        try:
            report = run_verify(
                get_plan(preset),
                base_url=resolved.base_url,
                api_key=resolved.require_key(),
                prometheus=prometheus or os.environ.get(PROMETHEUS_ENV) or DEFAULT_PROMETHEUS,
                scale=scale,
                max_vus=max_vus,
                model=model or os.environ.get("SOMA_MODEL"),
                think_time=think_time,
                via=via,
                controller=client.faults,
                listen=listen,
                upstream=upstream,
                proxy_control=proxy_control,
                env=script_env(variables, collection),
                max_rps=max_rps_option(max_rps),
                on_event=_render.note,
            )
        except KeyboardInterrupt:
            _render.note("interrupted: the load is stopped (the fault's rollback is noted above)")
            raise SystemExit(EXIT_INTERRUPTED) from None
    if as_json:
        _render.as_json(report)
    else:
        show(report)
    if report.verdict == "failed":
        raise SystemExit(1)


def _pct(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value * 100:.{digits}g}%"


def show(report: VerifyReport) -> None:
    """Print a verify report: verdict, each SLO's figures, and the evidence."""
    console = Console(highlight=False)
    colour = {"passed": "green", "failed": "red"}.get(report.verdict, "yellow")
    seconds = (report.finished_at - report.started_at).total_seconds()
    console.print(
        f"[bold]{escape(report.plan.name)}[/]: [{colour}]{report.verdict}[/] "
        f"({seconds:.0f}s; load {report.plan.load}, fault {report.plan.chaos})",
        soft_wrap=True,
    )
    if report.chaos is not None:
        console.print(
            f"fault: {escape(report.chaos.fault)} → hypothesis {report.chaos.verdict}, "
            f"rolled back: {'yes' if report.chaos.rolled_back else 'NO'}",
            soft_wrap=True,
        )
    if report.load is not None:
        load = report.load
        p99 = f"{load.latency.p99:.0f} ms" if load.latency else "—"
        console.print(
            f"load: {load.requests} requests, {load.failure_rate:.2%} failed, p99 {p99}, "
            f"k6 thresholds {'held' if load.passed else 'crossed'}",
            soft_wrap=True,
        )
    elif report.load_error:
        console.print(f"load: [red]k6 failed[/]: {escape(report.load_error)}", soft_wrap=True)
    for burn in report.slos:
        state = {True: "[green]held[/]", False: "[red]broken[/]", None: "[yellow]no data[/]"}
        console.print(
            f"  {escape(burn.name)} ({burn.objective:g}%): {state[burn.held]} — "
            f"error ratio {_pct(burn.error_ratio)}, burn rate "
            f"{'—' if burn.burn_rate is None else f'{burn.burn_rate:.2f}x'}, "
            f"budget burned {_pct(burn.budget_consumed)}"
            + (f", events {burn.events:.0f}" if burn.events is not None else ""),
            soft_wrap=True,
        )
        if burn.error:
            console.print(f"    [red]{escape(burn.error)}[/]", soft_wrap=True)
        for query in burn.queries:
            console.print(f"    [dim]{escape(query)}[/]", soft_wrap=True)
