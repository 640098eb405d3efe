"""``soma chaos``: list presets, print Chaos Mesh manifests, run experiments, stop them.

``list`` and ``manifest`` work offline. ``run PRESET --local`` needs nothing but this machine
(and, to judge the hypothesis, a Prometheus): a model or vector-store fault goes to the
gateway's fault point (through ``/v1/admin/faults``, with the key and URL of ``soma login``,
which must be an operator's admin key), other faults to a fault proxy or to stress workers.
``run PRESET`` and ``stop`` without ``--local`` talk to the Kubernetes API of the current
kubeconfig context.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import click
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from somaagent.cli import _render
from somaagent.cli._config import CliState, pass_state
from somaagent.cli._render import CliError
from somaagent.cli.chaos_local import (
    LOCAL_DURATION,
    LOCAL_DURATION_TEXT,
    GatewayFaults,
    duration_option,
    probe_traffic,
    prometheus_answers,
    proxy,
    warm_up,
)
from somaagent.errors import SomaAgentError
from somaagent.sre import children
from somaagent.sre.chaos.crds import CRDS_ENV, CrdSchemas
from somaagent.sre.chaos.duration import format_duration
from somaagent.sre.chaos.hypothesis import PrometheusHTTP
from somaagent.sre.chaos.injectors import KubernetesInjector, Via, local_injector
from somaagent.sre.chaos.kube import ChaosMeshClient
from somaagent.sre.chaos.manifest import KINDS, render_manifest
from somaagent.sre.chaos.presets import LOCAL_WINDOW, PRESETS, get_preset, with_window
from somaagent.sre.chaos.runner import (
    RunReport,
    local_runs,
    run_experiment,
    running_local,
    sigterm_interrupts,
    stop_local,
)
from somaagent.sre.chaos.spec import Experiment, load_experiment

PROMETHEUS_ENV = "SOMA_PROMETHEUS_URL"
DEFAULT_PROMETHEUS = "http://127.0.0.1:9090"
EXIT_INTERRUPTED = 130


def _out() -> Console:
    return Console(highlight=False)


def _experiment(name: str) -> Experiment:
    """A preset by name, or a spec file by path."""
    if name.endswith((".yaml", ".yml")) or os.sep in name:
        return load_experiment(Path(name))
    return get_preset(name)


F = TypeVar("F", bound=Callable[..., Any])


def _cluster_options(command: F) -> F:
    """``--namespace``, ``--kubeconfig`` and ``--context``, for the commands that list
    SomaAgent's experiments in a cluster."""
    for option in reversed(
        [
            click.option(
                "--namespace", default="somaagent", show_default=True, help="Kubernetes namespace."
            ),
            click.option("--kubeconfig", metavar="FILE", help="The kubeconfig file."),
            click.option(
                "--context", "kube_context", metavar="NAME", help="The kubeconfig context."
            ),
        ]
    ):
        command = option(command)
    return command


@click.group()
def chaos() -> None:
    """Chaos experiments: Chaos Mesh manifests, or local fault injection."""


@chaos.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the presets as JSON.")
def list_presets(as_json: bool) -> None:
    """List the preset experiments."""
    if as_json:
        _render.as_json([e.model_dump(mode="json") | {"preset": k} for k, e in PRESETS.items()])
        return
    table = Table(show_edge=False, header_style="bold")
    for column in ("Preset", "Fault", "Duration", "Service", "Hypothesis"):
        table.add_column(column, no_wrap=column != "Hypothesis")
    for key, experiment in PRESETS.items():
        table.add_row(
            key,
            f"{experiment.type.value} ({KINDS[experiment.type]})",
            format_duration(experiment.duration),
            experiment.service,
            escape(experiment.hypothesis.title),
        )
    _render.table_console().print(table)


def _schemas(crds: str | None) -> CrdSchemas | None:
    schemas = CrdSchemas.locate(crds)
    if schemas is None:
        _render.note(
            f"not checked against the CRD schemas: set {CRDS_ENV} or --crds to Chaos Mesh's "
            "CRD folder (webhook and metadata rules were checked)"
        )
    return schemas


@chaos.command("manifest")
@click.argument("preset")
@click.option("--crds", metavar="DIR", help=f"Chaos Mesh CRD folder (default ${CRDS_ENV}).")
@click.option("--namespace", metavar="NS", help="Override the target namespace.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of YAML.")
def manifest(preset: str, crds: str | None, namespace: str | None, as_json: bool) -> None:
    """Print the Chaos Mesh manifest of PRESET (a preset name or a spec file)."""
    experiment = _experiment(preset)
    if namespace:
        target = experiment.target.model_copy(update={"namespace": namespace})
        experiment = experiment.model_copy(update={"target": target})
    rendered = render_manifest(experiment, schemas=_schemas(crds))
    if as_json:
        _render.as_json(rendered)
    else:
        click.echo(yaml.safe_dump(rendered, sort_keys=False), nl=False)


@chaos.command("run")
@click.argument("preset")
@click.option("--local", "local", is_flag=True, help="Inject the fault on this machine.")
@click.option(
    "--duration",
    metavar="DURATION",
    help=f"How long the fault stays on (e.g. 30s; default: {LOCAL_DURATION_TEXT} with --local, "
    "else the preset's).",
)
@click.option(
    "--interval", metavar="DURATION", help="Time between checks (default: 5s local, else 15s)."
)
@click.option("--recovery", default="2m", show_default=True, help="Longest wait to recover.")
@click.option(
    "--prometheus",
    metavar="URL",
    help=f"Prometheus for the hypothesis (default ${PROMETHEUS_ENV} or {DEFAULT_PROMETHEUS}).",
)
@click.option(
    "--via",
    type=click.Choice(["point", "proxy"]),
    help="Local mode: the gateway's fault point, or a fault proxy (default: the preset's point).",
)
@click.option("--listen", metavar="HOST:PORT", help="Local mode: where the fault proxy listens.")
@click.option("--upstream", metavar="HOST:PORT", help="Local mode: the dependency it fronts.")
@click.option(
    "--proxy-control",
    metavar="URL",
    help="Local mode: fault a running `soma chaos proxy` through its control API instead.",
)
@click.option(
    "--memory-cap",
    type=click.IntRange(1),
    default=1024,
    show_default=True,
    help="Local mode: most MiB a memory stress takes.",
)
@click.option(
    "--collection",
    metavar="NAME",
    help="Local mode: the collection a memory experiment's probe traffic searches (default: a "
    "one-document scratch collection, deleted after the run).",
)
@click.option(
    "--traffic/--no-traffic",
    default=True,
    show_default=True,
    help="Local mode: send light probe traffic to the experiment's service, so its SLIs have "
    "data (turn off when other traffic is under way).",
)
@click.option("--force", is_flag=True, help="Inject even if the steady state does not hold.")
@click.option("--kubeconfig", metavar="FILE", help="Kubernetes mode: the kubeconfig file.")
@click.option("--context", "kube_context", metavar="NAME", help="Kubernetes mode: the context.")
@click.option("--crds", metavar="DIR", help=f"Chaos Mesh CRD folder (default ${CRDS_ENV}).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_state
def run(
    state: CliState,
    preset: str,
    local: bool,
    duration: str | None,
    interval: str | None,
    recovery: str,
    prometheus: str | None,
    via: Via | None,
    listen: str | None,
    upstream: str | None,
    proxy_control: str | None,
    memory_cap: int,
    collection: str | None,
    traffic: bool,
    force: bool,
    kubeconfig: str | None,
    kube_context: str | None,
    crds: str | None,
    as_json: bool,
) -> None:
    """Run PRESET: check the steady state, inject, watch, roll back, check recovery.

    The fault is always rolled back, also on Ctrl-C or SIGTERM (`soma chaos stop --local`).
    With --local the run sends its own light probe traffic to the service (a search, a short
    chat or a model list) so the hypothesis has data, and keeps the fault short by default;
    judging it needs a Prometheus that scrapes the gateway (`soma slo prometheus`).
    """
    experiment = _experiment(preset)
    hold = duration_option(duration, "--duration")
    every = duration_option(interval, "--interval")
    wait = duration_option(recovery, "--recovery") or timedelta(minutes=2)
    url = prometheus or os.environ.get(PROMETHEUS_ENV) or DEFAULT_PROMETHEUS
    say = _render.note if as_json else _progress
    querier = PrometheusHTTP(url)
    gateway = GatewayFaults(state)
    try:
        if local:
            experiment = with_window(experiment, LOCAL_WINDOW)
            hold = hold or LOCAL_DURATION
            every = every or timedelta(seconds=5)
            judged = prometheus_answers(url)
            if not judged:
                say(
                    f"no Prometheus answers at {url}: the hypothesis cannot be judged (start "
                    "`soma slo prometheus`, or pass --prometheus); one check after the fault"
                )
                wait = min(wait, every)
            injector = local_injector(
                experiment,
                duration=hold,
                via=via,
                controller=gateway,
                gateway=gateway.url,
                listen=listen,
                upstream=upstream,
                proxy_control=proxy_control,
                memory_cap=memory_cap << 20,
            )
            with (
                children.ended_on_exit(),
                running_local(experiment),
                probe_traffic(state, experiment, collection, enabled=traffic, say=say) as sending,
            ):
                if sending and judged:
                    warm_up(experiment, querier, say)
                report = run_experiment(
                    experiment,
                    injector,
                    querier,
                    duration=hold,
                    interval=every,
                    recovery=wait,
                    force=force,
                    on_event=say,
                )
        else:
            client = ChaosMeshClient.connect(kubeconfig=kubeconfig, context=kube_context)
            with client, sigterm_interrupts():
                kube = KubernetesInjector(experiment, client, schemas=_schemas(crds), duration=hold)
                report = run_experiment(
                    experiment,
                    kube,
                    querier,
                    duration=hold,
                    interval=every or timedelta(seconds=15),
                    recovery=wait,
                    force=force,
                    on_event=say,
                )
    finally:
        querier.close()
        gateway.close()
    if as_json:
        _render.as_json(report)
    else:
        _summary(report)
    if report.interrupted:
        raise SystemExit(EXIT_INTERRUPTED)
    if report.verdict in ("failed", "aborted"):
        raise CliError(f"experiment {report.verdict}: see the checks above")


def _progress(line: str) -> None:
    _render.note(line)


def _summary(report: RunReport) -> None:
    colour = {"passed": "green", "deviated": "yellow", "inconclusive": "yellow"}.get(
        report.verdict, "red"
    )
    console = _out()
    console.print(
        f"[bold]{escape(report.experiment)}[/] ({report.mode}): "
        f"[{colour}]{report.verdict}[/] after {report.duration_s:.1f}s",
        soft_wrap=True,
    )
    console.print(f"fault: {escape(report.fault)}", soft_wrap=True)
    rolled = "yes" if report.rolled_back else "NO"
    console.print(f"injected: {'yes' if report.injected else 'no'}, rolled back: {rolled}")
    for phase in ("before", "during", "after"):
        checks = report.phase(phase)
        if not checks:
            continue
        held = sum(1 for check in checks if check.held is True)
        console.print(f"{phase}: {held}/{len(checks)} checks held", soft_wrap=True)
    for note in report.notes:
        _render.note(note)


@chaos.command("stop")
@click.argument("name", required=False)
@click.option("--local", "local", is_flag=True, help="Stop local runs on this machine.")
@_cluster_options
@click.option("--json", "as_json", is_flag=True, help="Print what was stopped as JSON.")
def stop(
    name: str | None,
    local: bool,
    namespace: str,
    kubeconfig: str | None,
    kube_context: str | None,
    as_json: bool,
) -> None:
    """Stop running experiments (all of SomaAgent's, or NAME), rolling their faults back."""
    stopped: list[str] = []
    if local:
        stopped = stop_local(name)
    else:
        wanted = _experiment(name).name if name else None
        with ChaosMeshClient.connect(kubeconfig=kubeconfig, context=kube_context) as client:
            for status in client.list(namespace):
                matches = wanted is None or status.name == wanted
                if matches and client.delete(status.kind, status.name, status.namespace):
                    stopped.append(f"{status.kind}/{status.name}")
    if as_json:
        _render.as_json({"stopped": stopped})
    elif stopped:
        for item in stopped:
            _render.success(f"stopped {item}")
    else:
        _render.note("no running experiment")


@chaos.command("status")
@click.option("--local", "local", is_flag=True, help="Local runs, and the gateway's fault points.")
@_cluster_options
@click.option("--json", "as_json", is_flag=True, help="Print the statuses as JSON.")
@pass_state
def status(
    state: CliState,
    local: bool,
    namespace: str,
    kubeconfig: str | None,
    kube_context: str | None,
    as_json: bool,
) -> None:
    """What is running: SomaAgent's Chaos Mesh experiments, or (--local) local runs and the
    faults on the gateway's fault points."""
    if not local:
        with ChaosMeshClient.connect(kubeconfig=kubeconfig, context=kube_context) as client:
            found = client.list(namespace)
        if as_json:
            _render.as_json([item.model_dump(mode="json") for item in found])
            return
        table = Table(show_edge=False, header_style="bold")
        for column in ("Kind", "Name", "Phase", "Paused", "Created"):
            table.add_column(column)
        for item in found:
            paused = "yes" if item.paused else "no"
            table.add_row(item.kind, item.name, item.phase, paused, item.created_at or "—")
        if found:
            _render.table_console().print(table)
        else:
            _render.note(f"no experiment in {namespace}")
        return
    runs = local_runs()
    gateway = GatewayFaults(state)
    unread: str | None = None  # the gateway could not be asked: say why, show the runs anyway
    try:
        points = [p for p in gateway.list() if p.fault is not None]
    except SomaAgentError as exc:
        points, unread = [], f"the gateway's fault points at {gateway.url}: {exc}"
    finally:
        gateway.close()
    if as_json:
        _render.as_json(
            {
                "runs": [
                    {"experiment": r.experiment, "pid": r.pid, "started": r.started} for r in runs
                ],
                "fault_points": [p.model_dump(mode="json") for p in points],
                "fault_points_error": unread,
            }
        )
        return
    if unread:
        _render.error(f"could not read {unread}")
    for run in runs:
        since = time.strftime("%H:%M:%S", time.localtime(run.started))
        _render.note(f"running: {run.experiment} (pid {run.pid}, since {since})")
    for point in points:
        assert point.fault is not None
        until = point.expires_at.strftime("%H:%M:%S UTC") if point.expires_at else "—"
        by = f" by {point.fault.experiment}" if point.fault.experiment else ""
        _render.note(
            f"fault on {point.name}{by}: {point.fault.describe()}, {point.hits} calls hit, "
            f"clears itself at {until}"
        )
    if not runs and not points and not unread:
        _render.note("nothing running: no local run, no fault on the gateway's fault points")


def _pause_command(name: str, paused: bool) -> click.Command:
    verb = "Pause" if paused else "Resume"

    @click.command(name)
    @click.argument("experiment")
    @_cluster_options
    @click.option("--json", "as_json", is_flag=True, help="Print the new status as JSON.")
    def command(
        experiment: str,
        namespace: str,
        kubeconfig: str | None,
        kube_context: str | None,
        as_json: bool,
    ) -> None:
        wanted = _experiment(experiment).name
        with ChaosMeshClient.connect(kubeconfig=kubeconfig, context=kube_context) as client:
            kinds = [item.kind for item in client.list(namespace) if item.name == wanted]
            if not kinds:
                raise CliError(f"no running experiment {wanted} in {namespace}", exit_code=3)
            change = client.pause if paused else client.resume
            result = change(kinds[0], wanted, namespace)
        if as_json:
            _render.as_json(result)
        else:
            _render.success(f"{result.kind}/{result.name}: {result.phase}")

    command.help = f"{verb} a running Chaos Mesh experiment (a preset name or spec file)." + (
        " Chaos Mesh recovers the fault until it is resumed." if paused else ""
    )
    return command


chaos.add_command(proxy)
chaos.add_command(_pause_command("pause", True))
chaos.add_command(_pause_command("resume", False))
