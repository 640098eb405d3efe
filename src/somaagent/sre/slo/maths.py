"""Error-budget maths, with no I/O: SLI, budget, burn rates, status, and tidy numbers.

Definitions (the SRE Workbook's, ratio-based):

* error ratio = bad events / events over a window (``None`` without events: never NaN);
* SLI = 1 - error ratio, as a percentage;
* error budget = 1 - objective / 100, the share of events allowed to be bad (``0.001``);
* burn rate over a window = error ratio / error budget (1× spends the budget exactly over the
  SLO window);
* budget consumed = the burn rate over the whole SLO window; remaining = 1 - consumed.

Status: *no-data* without events in the SLO window, else *violated* at 100% consumed,
*at-risk* at 90% consumed or when a multiwindow burn alert fires, else *healthy*.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

__all__ = [
    "BUDGET_CRITICAL",
    "BUDGET_WARNING",
    "BURN_WINDOWS",
    "RATE_WINDOWS",
    "BurnWindow",
    "Status",
    "budget_consumed",
    "burn_rate",
    "error_ratio",
    "format_number",
    "format_percent",
    "judge",
    "tidy",
]

Status = Literal["healthy", "at-risk", "violated", "no-data", "unknown"]

BUDGET_WARNING = Decimal("0.9")
BUDGET_CRITICAL = Decimal(1)


@dataclass(frozen=True, slots=True)
class BurnWindow:
    """A multiwindow burn-rate alert: fires when both windows burn faster than ``factor``.

    Attributes:
        long: the long window (how much budget is at stake).
        short: the short window (the burn is still going on, so the alert resets fast).
        factor: the burn rate that fires it (14.4× spends 2% of a 30-day budget in 1 h).
        severity: ``critical`` pages, ``warning`` opens a ticket.
        for_: how long the condition must hold before the alert fires.
    """

    long: str
    short: str
    factor: Decimal
    severity: Literal["critical", "warning"]
    for_: str

    @property
    def key(self) -> str:
        """``1h/5m``."""
        return f"{self.long}/{self.short}"


BURN_WINDOWS: tuple[BurnWindow, ...] = (
    BurnWindow("1h", "5m", Decimal("14.4"), "critical", "2m"),
    BurnWindow("6h", "30m", Decimal(6), "critical", "15m"),
    BurnWindow("1d", "2h", Decimal(3), "warning", "1h"),
    BurnWindow("3d", "6h", Decimal(1), "warning", "3h"),
)

# Every window a burn-rate alert reads, shortest first.
RATE_WINDOWS: tuple[str, ...] = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def error_ratio(bad: float | None, total: float | None) -> float | None:
    """Bad events over events, in [0, 1]; ``None`` without events.

    A missing bad count with events present means nothing failed. Prometheus extrapolates
    ``increase()``, so counts are not whole numbers and are clamped into range.
    """
    total = _finite(total)
    if total is None or total <= 0:
        return None
    bad = _finite(bad) or 0.0
    return min(max(bad / total, 0.0), 1.0)


def burn_rate(ratio: float | None, budget: Decimal) -> float | None:
    """How fast the budget burns: ``ratio / budget`` (``None`` without events)."""
    if ratio is None:
        return None
    return tidy(ratio / float(budget))


def budget_consumed(window_ratio: float | None, budget: Decimal) -> float | None:
    """The share of the window's error budget spent: the burn rate over the whole window."""
    return burn_rate(window_ratio, budget)


def judge(consumed: float | None, *, alert_firing: bool) -> Status:
    """The status for a consumed budget and whether any burn-rate alert fires."""
    if consumed is None:
        return "no-data"
    if consumed >= float(BUDGET_CRITICAL):
        return "violated"
    if consumed >= float(BUDGET_WARNING) or alert_firing:
        return "at-risk"
    return "healthy"


def tidy(value: float, digits: int = 12) -> float:
    """``value`` rounded to ``digits`` significant digits, so binary noise never shows:
    ``tidy(0.1 + 0.2) == 0.3`` and its repr is ``0.3``."""
    if not math.isfinite(value) or value == 0:
        return value
    return float(f"{value:.{digits}g}")


def format_percent(ratio: float | Decimal | None, *, places: int = 2) -> str:
    """A ratio as a percentage with at most ``places`` decimals and no trailing zeros.

    ``0.999 → "99.9%"``, ``0.3 → "30%"``, ``0.99999 → "100%"`` (rounded), ``None → "—"``.
    """
    if ratio is None:
        return "—"
    number = Decimal(repr(ratio)) if isinstance(ratio, float) else ratio
    scaled = (number * 100).quantize(Decimal(1).scaleb(-places))
    text = format(scaled, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{'0' if text in ('-0', '') else text}%"


def format_number(value: float | Decimal | None, *, digits: int = 4) -> str:
    """A figure with ``digits`` significant digits, plain notation (``20``, ``0.0144``)."""
    if value is None:
        return "—"
    number = Decimal(repr(value)) if isinstance(value, float) else value
    if number == 0:
        return "0"
    rounded = Decimal(f"{number:.{digits}g}")
    text = format(rounded, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
