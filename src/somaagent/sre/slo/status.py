"""What the tracker reports: one :class:`SLOStatus` per SLO, a :class:`BudgetBurn` for a
time range, and :class:`TrendPoint` series for charts. Plain pydantic models, so the
gateway, the CLI (``--json``) and ``soma sre verify`` share one wire format.

Numbers are floats tidied to 12 significant digits (no ``0.30000000000000004``); a figure
that cannot be known (no traffic) is ``None``, never NaN.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from somaagent.sre.slo.maths import Status

__all__ = ["Budget", "BudgetBurn", "BurnRate", "SLOStatus", "TrendPoint"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class BurnRate(_Model):
    """One multiwindow burn-rate check.

    Attributes:
        long_window, short_window: the two windows (``1h`` and ``5m``).
        factor: the burn rate at which it fires (14.4).
        severity: ``critical`` (page) or ``warning`` (ticket).
        long_rate, short_rate: the measured burn rates; ``None`` without traffic.
        firing: both rates are above ``factor``.
    """

    long_window: str
    short_window: str
    factor: float
    severity: Literal["critical", "warning"]
    long_rate: float | None
    short_rate: float | None
    firing: bool


class Budget(_Model):
    """The error budget over the SLO window.

    Attributes:
        ratio: the share of events allowed to be bad (``0.001`` for 99.9%).
        total: bad events allowed so far (``ratio × events``); ``None`` without traffic.
        consumed: the share of the budget spent (``1.0`` = all of it; may exceed 1).
        remaining: ``1 - consumed`` (negative once overspent).
        seconds: the budget as time, the share of the window that may be bad.
    """

    ratio: float
    total: float | None
    consumed: float | None
    remaining: float | None
    seconds: float


class SLOStatus(_Model):
    """Where one SLO stands now.

    Attributes:
        status: ``healthy``, ``at-risk``, ``violated``, ``no-data`` (no traffic in the
            window) or ``unknown`` (Prometheus could not answer; see ``error``).
        sli: the percentage of good events over the window.
        events, bad_events: counted over the window (``increase()`` extrapolates, so they
            need not be whole).
        reason: one line saying why the status is what it is.
        error: what went wrong when the status is ``unknown``.
        query: the PromQL that counted the window's events, as evidence.
    """

    name: str
    service: str
    description: str
    kind: Literal["ratio", "latency", "uptime"]
    objective: float
    window: str
    status: Status
    sli: float | None
    error_ratio: float | None
    events: float | None
    bad_events: float | None
    budget: Budget
    burn_rates: list[BurnRate]
    reason: str
    error: str | None = None
    query: str
    evaluated_at: datetime


class BudgetBurn(_Model):
    """How much error budget one SLO burned between ``start`` and ``end`` (a test run).

    Attributes:
        events, bad_events: counted in the range; ``None`` without traffic.
        error_ratio: bad over events in the range.
        burn_rate: the error ratio over the error budget (1× = on budget).
        budget_consumed: the share of the whole window's budget this range used, assuming
            the window's traffic rate: ``burn_rate × range / window``.
        held: the objective held over the range (``error_ratio ≤ budget``); ``None``
            without traffic or when Prometheus failed.
        queries: the PromQL that was run, as evidence.
        error: what went wrong when Prometheus could not answer.
    """

    name: str
    objective: float
    start: datetime
    end: datetime
    events: float | None
    bad_events: float | None
    error_ratio: float | None
    burn_rate: float | None
    budget_consumed: float | None
    held: bool | None
    queries: list[str]
    error: str | None = None


class TrendPoint(_Model):
    """The budget remaining at one moment (for charts); ``None`` without traffic."""

    at: datetime
    remaining: float | None
    sli: float | None
