"""PromQL for an SLI: the event counts the tracker reads and the error ratios the rules record.

No expression here can yield NaN: a ratio's denominator is filtered with ``> 0``, so a window
without traffic has no sample at all (no data) rather than ``0 / 0``, and a missing bad-event
series (nothing has failed yet) counts as zero with ``or vector(0)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from somaagent.sre.slo.spec import LatencySLI, Matcher, RatioSLI, SLISpec, SLOSpec, UptimeSLI

__all__ = [
    "EventQueries",
    "decimal_text",
    "error_ratio_expr",
    "event_queries",
    "le_matcher",
    "selector",
]


def decimal_text(value: Decimal | int) -> str:
    """A number as plain decimal text with no float noise or exponent (``0.0144``, ``2``)."""
    number = Decimal(value)
    text = format(number.normalize(), "f")
    return text if "." not in text else text.rstrip("0").rstrip(".") or "0"


def le_matcher(threshold: Decimal) -> str:
    """An ``le`` matcher for a bucket bound, in every form exporters write it (``2`` / ``2.0``)."""
    plain = decimal_text(threshold)
    forms = [plain] if "." in plain else [plain, f"{plain}.0"]
    return 'le=~"' + "|".join(form.replace(".", "\\\\.") for form in forms) + '"'


def selector(matchers: list[Matcher], *extra: Matcher | str) -> str:
    """``{a="b", c=~"d"}``; empty braces when there are no matchers."""
    parts = [m.promql() for m in matchers] + [
        e if isinstance(e, str) else e.promql() for e in extra
    ]
    return "{" + ", ".join(parts) + "}"


@dataclass(frozen=True, slots=True)
class EventQueries:
    """Instant queries for one window: total events, and either bad or good events."""

    total: str
    bad: str | None = None
    good: str | None = None


def event_queries(sli: SLISpec, window: str) -> EventQueries:
    """The queries counting an SLI's events over ``window`` (summed over all series)."""
    if isinstance(sli, RatioSLI):
        return EventQueries(
            total=f"sum(increase({sli.metric}{selector(sli.selector)}[{window}]))",
            bad=f"sum(increase({sli.metric}{selector(sli.selector, *sli.bad)}[{window}]))",
        )
    if isinstance(sli, LatencySLI):
        le = le_matcher(sli.threshold)
        return EventQueries(
            total=f"sum(increase({sli.metric}_count{selector(sli.selector)}[{window}]))",
            good=f"sum(increase({sli.metric}_bucket{selector(sli.selector, le)}[{window}]))",
        )
    assert isinstance(sli, UptimeSLI)
    return EventQueries(
        total=f"sum(count_over_time({sli.metric}{selector(sli.selector)}[{window}]))",
        good=f"sum(sum_over_time({sli.metric}{selector(sli.selector)}[{window}]))",
    )


def error_ratio_expr(slo: SLOSpec, window: str) -> str:
    """The share of bad events over ``window``; no sample when there was no traffic."""
    sli = slo.sli
    if isinstance(sli, RatioSLI):
        total = f"sum(rate({sli.metric}{selector(sli.selector)}[{window}]))"
        bad = f"sum(rate({sli.metric}{selector(sli.selector, *sli.bad)}[{window}]))"
        return f"({bad} or vector(0))\n/\n({total} > 0)"
    if isinstance(sli, LatencySLI):
        total = f"sum(rate({sli.metric}_count{selector(sli.selector)}[{window}]))"
        good = (
            f"sum(rate({sli.metric}_bucket"
            f"{selector(sli.selector, le_matcher(sli.threshold))}[{window}]))"
        )
        return f"({total} - {good})\n/\n({total} > 0)"
    assert isinstance(sli, UptimeSLI)
    total = f"sum(count_over_time({sli.metric}{selector(sli.selector)}[{window}]))"
    good = f"sum(sum_over_time({sli.metric}{selector(sli.selector)}[{window}]))"
    return f"({total} - {good})\n/\n({total} > 0)"
