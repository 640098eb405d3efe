"""``soma sre verify``: one resilience check that joins a load test, a local fault and the SLOs.

k6 drives a load profile against the gateway; a quarter of the way in, the chaos preset's
fault is injected on this machine (on a gateway fault point, through a fault proxy in front of
a dependency, or as stress) and rolled back after half the load's length; then every SLO of
the preset is judged over the whole run with the SLO tracker: which held, the error ratio,
the burn rate and the share of the 30-day budget the run burned, with the PromQL that measured
them as evidence.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel

from somaagent.errors import ConfigurationError
from somaagent.sre.chaos.hypothesis import PrometheusHTTP
from somaagent.sre.chaos.injectors import FaultController, Via, local_injector
from somaagent.sre.chaos.presets import get_preset
from somaagent.sre.chaos.runner import RunReport, run_experiment
from somaagent.sre.loadtest.k6 import K6Error
from somaagent.sre.loadtest.report import LoadReport
from somaagent.sre.loadtest.runner import run_loadtest
from somaagent.sre.loadtest.spec import get_loadtest
from somaagent.sre.slo import BudgetBurn, SLOTracker, default_specs

__all__ = ["VERIFY_PRESETS", "VerifyPlan", "VerifyReport", "get_plan", "run_verify"]


_STOP_WAIT_S = 45.0
"""How long an interrupted run waits for k6 to stop its users and write its summary."""


class VerifyPlan(BaseModel):
    """Which load, which fault, which SLOs."""

    name: str
    load: str
    chaos: str
    slos: list[str]


VERIFY_PRESETS: dict[str, VerifyPlan] = {
    plan.name: plan
    for plan in [
        VerifyPlan(
            name="slm_service_failure",
            load="gateway_smoke",
            chaos="slm_service_failure",
            slos=["gateway-error-rate", "slm-availability", "slm-latency"],
        ),
        VerifyPlan(
            name="gateway_cpu_stress",
            load="gateway_smoke",
            chaos="gateway_cpu_stress",
            slos=["gateway-error-rate", "gateway-latency", "slm-latency"],
        ),
        VerifyPlan(
            name="memory_gateway_latency",
            load="vector_search_load",
            chaos="memory_gateway_latency",
            slos=["memory-availability", "memory-latency"],
        ),
        VerifyPlan(
            name="vector_store_packet_loss",
            load="vector_search_load",
            chaos="vector_store_packet_loss",
            slos=["memory-availability", "memory-latency"],
        ),
    ]
}
"""The resilience checks ``soma sre verify`` knows, by name."""


class VerifyReport(BaseModel):
    """The evidence of one resilience check."""

    plan: VerifyPlan
    started_at: datetime
    finished_at: datetime
    verdict: Literal["passed", "failed", "inconclusive"]
    held: list[str]
    broken: list[str]
    no_data: list[str]
    slos: list[BudgetBurn]
    load: LoadReport | None
    load_error: str | None = None
    chaos: RunReport | None


def get_plan(name: str) -> VerifyPlan:
    """A verify preset by name.

    Raises:
        ConfigurationError: there is no such preset (the message lists them).
    """
    key = name.replace("-", "_")
    if key not in VERIFY_PRESETS:
        raise ConfigurationError(
            f"no verify preset {name!r}; choose one of: {', '.join(VERIFY_PRESETS)}"
        )
    return VERIFY_PRESETS[key]


def run_verify(
    plan: VerifyPlan,
    *,
    base_url: str,
    api_key: str,
    prometheus: str,
    scale: float = 0.1,
    max_vus: int | None = None,
    model: str | None = None,
    think_time: float | None = None,
    via: Via | None = None,
    controller: FaultController | None = None,
    listen: str | None = None,
    upstream: str | None = None,
    proxy_control: str | None = None,
    env: dict[str, str] | None = None,
    settle: timedelta = timedelta(seconds=5),
    interval: timedelta = timedelta(seconds=5),
    max_rps: int | None = None,
    on_event: Callable[[str], None] | None = None,
) -> VerifyReport:
    """Run the plan's load with its fault in the middle, then judge its SLOs.

    Args:
        base_url, api_key: the gateway under test (for a fault through a proxy, its
            dependency must go through the proxy at ``listen``).
        via, controller, listen, upstream, proxy_control: where the fault goes; see
            :func:`~somaagent.sre.chaos.injectors.local_injector` (``controller`` is the
            SDK's ``client.faults`` with an operator's admin key, for fault points).
        prometheus: the Prometheus that scrapes the gateway.
        scale: multiplies the load profile's durations.
        env: the load script's variables (``SOMA_COLLECTION`` for the memory plans).
        settle: after the load, how long to wait for the last scrape before judging.
        max_rps: the most requests per second the load sends (stay under the key's rate
            limit: :func:`~somaagent.sre.loadtest.runner.rate_cap`).

    Raises:
        ConfigurationError: a variable the load needs is missing, or the fault has no place.
        KeyboardInterrupt: the run was interrupted (Ctrl-C, or SIGTERM within
            :func:`~somaagent.sre.children.ended_on_exit`); the fault was rolled back and
            the load stopped before it is raised.

    However it ends, the load (k6) has ended too: an error or an interrupt stops it.
    """
    say = on_event or (lambda _line: None)
    test = get_loadtest(plan.load).scaled(scale, max_vus=max_vus)
    test.check_variables(env or {})
    experiment = get_preset(plan.chaos)
    total = test.profile.total
    fault_for = max(total / 2, timedelta(seconds=1))
    injector = local_injector(
        experiment,
        duration=fault_for,
        via=via,
        controller=controller,
        gateway=base_url,
        listen=listen,
        upstream=upstream,
        proxy_control=proxy_control,
    )
    outcome: dict[str, LoadReport | str] = {}
    stop = threading.Event()

    def load() -> None:
        try:
            outcome["report"] = run_loadtest(
                test,
                base_url=base_url,
                api_key=api_key,
                model=model,
                think_time=think_time,
                env=env,
                max_rps=max_rps,
                stop=stop,
            )[0]
        except K6Error as exc:
            outcome["error"] = str(exc)

    started = datetime.now(UTC)
    say(f"load: {test.name} for {total.total_seconds():g}s against {base_url}")
    worker = threading.Thread(target=load, name="soma-verify-k6", daemon=True)
    querier = PrometheusHTTP(prometheus)
    chaos: RunReport | None = None
    try:
        worker.start()
        worker.join(timeout=(total / 4).total_seconds())
        if worker.is_alive():
            chaos = run_experiment(
                experiment,
                injector,
                querier,
                duration=fault_for,
                interval=interval,
                recovery=max(total / 4, interval),
                force=True,
                on_event=say,
            )
            if chaos.interrupted:
                raise KeyboardInterrupt
        worker.join()
    finally:
        querier.close()
        if worker.is_alive():  # an error or an interrupt: end the load before leaving
            stop.set()
            worker.join(timeout=_STOP_WAIT_S)
    ended = datetime.now(UTC)
    say(f"judging {len(plan.slos)} SLOs over {(ended - started).total_seconds():.0f}s")
    time.sleep(settle.total_seconds())  # let Prometheus take its last scrape
    specs = [spec for spec in default_specs() if spec.name in plan.slos]
    with SLOTracker(prometheus, specs) as tracker:
        burns = [tracker.burn(spec, started, ended) for spec in specs]
    held = [b.name for b in burns if b.held is True]
    broken = [b.name for b in burns if b.held is False]
    no_data = [b.name for b in burns if b.held is None]
    verdict: Literal["passed", "failed", "inconclusive"] = (
        "failed" if broken else "passed" if held and not no_data else "inconclusive"
    )
    load_report = outcome.get("report")
    error = outcome.get("error")
    return VerifyReport(
        plan=plan,
        started_at=started,
        finished_at=datetime.now(UTC),
        verdict=verdict,
        held=held,
        broken=broken,
        no_data=no_data,
        slos=burns,
        load=load_report if isinstance(load_report, LoadReport) else None,
        load_error=error if isinstance(error, str) else None,
        chaos=chaos,
    )
