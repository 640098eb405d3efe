"""Run an experiment: check the steady state, inject the fault, watch, always roll back.

The order is Chaos Toolkit's: the hypothesis is checked *before* (a system that is not in its
steady state is not broken further: the run is ``aborted``), *during* the fault (probes marked
``during=False`` are watched but not required), and *after* rollback until it holds again or
the recovery time runs out. Rollback sits in a ``finally``: an error, Ctrl-C or SIGTERM (turned
into :class:`KeyboardInterrupt` by :func:`sigterm_interrupts`) still removes the fault. A
rollback that fails (the gateway cannot be told) is in the report's notes, with
``rolled_back`` false; local faults also end by themselves at their own deadline.

Verdicts: ``passed`` (held throughout), ``deviated`` (a required probe failed during the fault;
the system recovered), ``failed`` (it did not recover), ``aborted`` (not steady before),
``inconclusive`` (no data to judge), ``interrupted``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

import platformdirs
from pydantic import BaseModel

from somaagent.errors import SomaAgentError
from somaagent.sre.chaos.hypothesis import PhaseCheck, Querier, check_phase, summarize
from somaagent.sre.chaos.spec import Experiment
from somaagent.sre.children import sigterm_interrupts

__all__ = [
    "Injector",
    "LocalRun",
    "RunReport",
    "Verdict",
    "local_runs",
    "run_experiment",
    "running_local",
    "sigterm_interrupts",
    "state_dir",
    "stop_local",
]

Verdict = Literal["passed", "deviated", "failed", "aborted", "inconclusive", "interrupted"]
STATE_ENV = "SOMA_CHAOS_STATE_DIR"


class Injector(Protocol):
    """Puts a fault in place and takes it away. ``rollback`` must be idempotent."""

    mode: Literal["local", "kubernetes"]

    def describe(self) -> str:
        """What the fault is, for people."""
        ...

    def setup(self) -> None:
        """Prepare without faulting (start the proxy, check the API)."""
        ...

    def apply(self) -> None:
        """Turn the fault on."""
        ...

    def rollback(self) -> None:
        """Turn the fault off (safe to call twice, or without ``apply``)."""
        ...

    def teardown(self) -> None:
        """Release what ``setup`` took."""
        ...


class RunReport(BaseModel):
    """What a run did and saw."""

    experiment: str
    mode: Literal["local", "kubernetes"]
    fault: str
    started_at: datetime
    finished_at: datetime
    duration_s: float
    injected: bool
    rolled_back: bool
    interrupted: bool
    verdict: Verdict
    checks: list[PhaseCheck]
    notes: list[str] = []

    def phase(self, name: str) -> list[PhaseCheck]:
        """The checks made in one phase."""
        return [check for check in self.checks if check.phase == name]


def _verdict(report: dict[str, Any], checks: list[PhaseCheck]) -> Verdict:
    if report["interrupted"]:
        return "interrupted"
    before = summarize(c for c in checks if c.phase == "before")
    if not report["injected"]:
        return "aborted" if before is False else "inconclusive"
    after = [c for c in checks if c.phase == "after"]
    if after and after[-1].held is False:
        return "failed"
    during = summarize(c for c in checks if c.phase == "during")
    if during is False:
        return "deviated"
    if before is True and during is True and after and after[-1].held is True:
        return "passed"
    return "inconclusive"


def run_experiment(
    experiment: Experiment,
    injector: Injector,
    querier: Querier,
    *,
    duration: timedelta | None = None,
    interval: timedelta = timedelta(seconds=15),
    recovery: timedelta = timedelta(minutes=2),
    force: bool = False,
    on_event: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> RunReport:
    """Run ``experiment`` with ``injector``, judging it by its hypothesis through ``querier``.

    Args:
        duration: how long the fault stays on (default: the experiment's).
        interval: time between checks during the fault and while waiting for recovery.
        recovery: how long to wait after rollback for the steady state to return.
        force: inject even when the steady state does not hold before.
        on_event: called with one line per step, for progress output.
        sleep: the sleep function (tests pass a fast one).
    """
    say = on_event or (lambda _line: None)
    hold = (duration or experiment.duration).total_seconds()
    step = max(interval.total_seconds(), 0.05)
    started = datetime.now(UTC)
    clock = time.monotonic()
    checks: list[PhaseCheck] = []
    state: dict[str, Any] = {"injected": False, "rolled_back": False, "interrupted": False}
    notes: list[str] = []

    def record(check: PhaseCheck) -> PhaseCheck:
        checks.append(check)
        say(f"{check.phase}: {_line(check)}")
        return check

    try:
        injector.setup()
        try:
            before = record(check_phase(experiment.hypothesis, "before", querier))
            if before.held is False and not force:
                notes.append("the steady state did not hold before the fault; nothing injected")
                say("aborted: not in the steady state, so no fault was injected")
            else:
                try:
                    say(f"fault on: {injector.describe()} for {hold:g}s")
                    injector.apply()
                    state["injected"] = True
                    deadline = time.monotonic() + hold
                    while (left := deadline - time.monotonic()) > 0:
                        sleep(min(step, left))
                        record(check_phase(experiment.hypothesis, "during", querier))
                finally:
                    if _rollback(injector, state, notes):
                        say("fault off: rolled back")
                give_up = time.monotonic() + recovery.total_seconds()
                while True:
                    after = record(check_phase(experiment.hypothesis, "after", querier))
                    if after.held is True or time.monotonic() >= give_up:
                        break
                    sleep(min(step, max(give_up - time.monotonic(), 0.0)))
        finally:
            _rollback(injector, state, notes)
            try:
                injector.teardown()
            except SomaAgentError as exc:
                notes.append(f"teardown failed: {exc}")
    except KeyboardInterrupt:
        state["interrupted"] = True
        done = "rolled back" if state["rolled_back"] else "NOT rolled back (see the notes)"
        notes.append(f"interrupted; the fault was {done}")
        say(f"interrupted: the fault was {done}")
    return RunReport(
        experiment=experiment.name,
        mode=injector.mode,
        fault=injector.describe(),
        started_at=started,
        finished_at=datetime.now(UTC),
        duration_s=round(time.monotonic() - clock, 3),
        injected=state["injected"],
        rolled_back=state["rolled_back"],
        interrupted=state["interrupted"],
        verdict=_verdict(state, checks),
        checks=checks,
        notes=notes,
    )


def _rollback(injector: Injector, state: dict[str, Any], notes: list[str]) -> bool:
    """Roll the fault back; a failure is noted (and the run says it was not rolled back)."""
    try:
        injector.rollback()
    except SomaAgentError as exc:
        if str(exc) not in notes:
            notes.append(str(exc))
        state["rolled_back"] = False
        return False
    state["rolled_back"] = True
    return True


def _line(check: PhaseCheck) -> str:
    parts = []
    for result in check.results:
        value = "no data" if result.value is None else f"{result.value:.4g}"
        if result.status == "error":
            value = "error"
        mark = {"held": "ok", "violated": "VIOLATED", "no_data": "no data", "error": "error"}
        optional = "" if result.required else " (not required)"
        parts.append(f"{result.probe}={value} {mark[result.status]}{optional}")
    return "; ".join(parts)


# -- signals and `soma chaos stop --local` ----------------------------------------------------


def state_dir() -> Path:
    """Where running local experiments register themselves (``$SOMA_CHAOS_STATE_DIR``)."""
    chosen = os.environ.get(STATE_ENV)
    return Path(chosen) if chosen else Path(platformdirs.user_state_dir("somaagent")) / "chaos"


@contextlib.contextmanager
def running_local(experiment: Experiment, *, directory: Path | None = None) -> Iterator[Path]:
    """Register this process as running ``experiment`` locally, for ``stop_local``."""
    folder = directory or state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{experiment.name}-{os.getpid()}.json"
    record = {"experiment": experiment.name, "pid": os.getpid(), "started": time.time()}
    path.write_text(json.dumps(record), encoding="utf-8")
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class LocalRun:
    """A local experiment running on this machine, as it registered itself."""

    experiment: str
    pid: int
    started: float
    path: Path


def local_runs(*, directory: Path | None = None) -> list[LocalRun]:
    """The local runs registered on this machine whose process is alive.

    The record of a run killed outright is removed: its process is gone, and its fault ends
    at its own deadline (a stress worker's, a fault point's or proxy fault's TTL).
    """
    folder = directory or state_dir()
    runs: list[LocalRun] = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            run = LocalRun(
                experiment=str(record["experiment"]),
                pid=int(record["pid"]),
                started=float(record["started"]),
                path=path,
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not _alive(run.pid):
            path.unlink(missing_ok=True)
            continue
        runs.append(run)
    return runs


def stop_local(
    name: str | None = None, *, directory: Path | None = None, wait: float = 30.0
) -> list[str]:
    """Ask running local experiments to stop (SIGTERM, so they roll back), and wait.

    Returns:
        The names of the experiments that were asked to stop.
    """
    stopped: list[str] = []
    waiting: list[tuple[Path, int]] = []
    for run in local_runs(directory=directory):
        if name is not None and run.experiment != name.replace("_", "-"):
            continue
        os.kill(run.pid, signal.SIGTERM)
        stopped.append(run.experiment)
        waiting.append((run.path, run.pid))
    deadline = time.monotonic() + wait
    while waiting and time.monotonic() < deadline:
        waiting = [(path, pid) for path, pid in waiting if path.exists() and _alive(pid)]
        time.sleep(0.05)
    return stopped
