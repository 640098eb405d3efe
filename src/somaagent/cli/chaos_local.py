"""The local half of ``soma chaos``: the gateway's fault points through the SDK, a local run's
probe traffic and warm-up, the ``proxy`` command (a fault proxy left running, with a control
API), and duration options."""

from __future__ import annotations

import builtins
import contextlib
import os
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import click
import httpx

from somaagent.cli import _render
from somaagent.cli._config import CliState
from somaagent.sdk import Client
from somaagent.sdk._faults import Faults
from somaagent.sre.chaos.duration import parse_duration
from somaagent.sre.chaos.hypothesis import PrometheusHTTP
from somaagent.sre.chaos.proxy import ProxyFaults, parse_host_port
from somaagent.sre.chaos.proxy_control import DEFAULT_CONTROL, controlled_proxy
from somaagent.sre.chaos.spec import Experiment
from somaagent.sre.chaos.traffic import ProbeTraffic, probe_requests, scratch_name, wait_for_data
from somaagent.sre.children import sigterm_interrupts
from somaagent.types import FaultCreate, FaultPoint

__all__ = [
    "LOCAL_DURATION",
    "GatewayFaults",
    "duration_option",
    "probe_traffic",
    "prometheus_answers",
    "proxy",
    "warm_up",
]

LOCAL_DURATION = timedelta(seconds=20)
LOCAL_DURATION_TEXT = "20s"
"""How long a local run's fault stays on unless told: long enough to show in a 30 s window."""
WARM_UP_S = 45.0
"""The longest a local run waits for Prometheus to have scraped its probe traffic and for the
steady state to hold (its own first requests leave the 30 s window by then)."""


class GatewayFaults:
    """The gateway's fault points through an SDK client made on first use, so a run that
    needs no gateway (a proxy or a stress fault) needs no key either."""

    def __init__(self, state: CliState) -> None:
        self._state = state
        self._client: Client | None = None

    @property
    def url(self) -> str:
        """The gateway's base URL."""
        return self._state.resolve().base_url

    def _faults(self) -> Faults:
        if self._client is None:
            self._client = self._state.resolve().client()
        return self._client.faults

    def get(self, point: str) -> FaultPoint:
        return self._faults().get(point)

    def set(self, point: str, fault: FaultCreate) -> FaultPoint:
        return self._faults().set(point, fault)

    def list(self) -> builtins.list[FaultPoint]:
        return self._faults().list()

    def clear(self, point: str) -> None:
        self._faults().clear(point)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def duration_option(value: str | None, option: str) -> timedelta | None:
    """A positive duration option (``30s``, ``2m``), or a usage error naming ``option``."""
    if value is None:
        return None
    try:
        parsed = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from exc
    if parsed <= timedelta(0):
        raise click.BadParameter("must be greater than 0", param_hint=option)
    return parsed


@click.command("proxy")
@click.option("--listen", required=True, metavar="HOST:PORT", help="Where the proxy listens.")
@click.option("--upstream", required=True, metavar="HOST:PORT", help="The dependency.")
@click.option(
    "--control",
    default=DEFAULT_CONTROL,
    show_default=True,
    metavar="HOST:PORT",
    help="Where the control API listens (keep it on loopback: it has no authentication).",
)
@click.option("--latency", metavar="DURATION", help="Start with this delay (e.g. 100ms).")
@click.option("--jitter", metavar="DURATION", help="± around the delay.")
@click.option("--loss", type=click.FloatRange(0, 100), help="Start losing this % of chunks.")
@click.option("--bandwidth", type=click.IntRange(1), help="Start capped at bytes per second.")
@click.option("--reset", is_flag=True, help="Start resetting every connection.")
@click.option("--partition", is_flag=True, help="Start partitioned (connections stall).")
def proxy(
    listen: str,
    upstream: str,
    control: str,
    latency: str | None,
    jitter: str | None,
    loss: float | None,
    bandwidth: int | None,
    reset: bool,
    partition: bool,
) -> None:
    """Run a fault proxy in front of a dependency until Ctrl-C, faults set by its control API.

    Point the dependency's client at --listen once; `soma chaos run PRESET --local
    --proxy-control http://CONTROL` then switches faults on and off (they clear themselves
    after their TTL too). Faults given here are on from the start.
    """
    for option, value in (("--listen", listen), ("--upstream", upstream), ("--control", control)):
        try:
            parse_host_port(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=option) from None
    start = ProxyFaults(
        latency_ms=_ms(latency, "--latency"),
        jitter_ms=_ms(jitter, "--jitter"),
        loss_percent=loss or 0,
        bandwidth_bytes_per_s=bandwidth,
        reset=reset,
        partition=partition,
    )
    with (
        sigterm_interrupts(),
        controlled_proxy(upstream, listen=listen, control=control) as running,
    ):
        if start.active:
            running.apply(start)
        _render.success(
            f"fault proxy {running.listen} → {upstream}; control API {running.control_url}/faults"
        )
        _render.note(f"faults: {start.describe()}; Ctrl-C stops it (and heals)")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            _render.note("stopped: the proxy is closed")


def _ms(value: str | None, option: str) -> float:
    parsed = duration_option(value, option)
    return 0.0 if parsed is None else parsed.total_seconds() * 1000


def prometheus_answers(url: str) -> bool:
    """Whether a Prometheus answers its readiness check at ``url``."""
    try:
        return httpx.get(f"{url.rstrip('/')}/-/ready", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def probe_traffic(
    state: CliState,
    experiment: Experiment,
    collection: str | None,
    *,
    enabled: bool,
    say: Callable[[str], None],
) -> contextlib.AbstractContextManager[bool]:
    """Probe traffic at ``experiment``'s service for the length of the block, if enabled and
    a key is at hand (a stress run needs none); the block gets whether traffic is flowing."""
    resolved = state.resolve()
    if not enabled:
        return contextlib.nullcontext(False)
    if resolved.api_key is None:
        say("no probe traffic: no API key (soma login or SOMA_API_KEY)")
        return contextlib.nullcontext(False)
    scratch = scratch_name() if experiment.service == "memory" and not collection else None
    requests = probe_requests(
        experiment, collection=collection or scratch, model=os.environ.get("SOMA_MODEL")
    )
    return _flowing(
        ProbeTraffic(resolved.base_url, resolved.api_key, requests, scratch=scratch), say
    )


@contextlib.contextmanager
def _flowing(traffic: ProbeTraffic, say: Callable[[str], None]) -> Iterator[bool]:
    with traffic:
        say(f"probe traffic: {traffic.describe()}")
        try:
            yield True
        finally:
            failed = sum(n for code, n in traffic.statuses.items() if code >= 400) + traffic.errors
            say(f"probe traffic: {traffic.sent} requests, {failed} failed")


def warm_up(experiment: Experiment, querier: PrometheusHTTP, say: Callable[[str], None]) -> None:
    """Let Prometheus scrape some probe traffic, so the steady state can be judged."""
    if wait_for_data(experiment, querier, timeout=WARM_UP_S):
        return
    say(f"no steady state with data after {WARM_UP_S:g}s of probe traffic; checking anyway")
