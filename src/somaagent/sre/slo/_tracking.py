"""The tracker's half that does no I/O: query planning, counting, judging, trends.

:mod:`somaagent.sre.slo.tracker` holds the sync and async twins that send the queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from somaagent.sre.slo import maths
from somaagent.sre.slo.maths import BURN_WINDOWS, RATE_WINDOWS
from somaagent.sre.slo.prometheus import Sample, Series
from somaagent.sre.slo.promql import EventQueries, event_queries, le_matcher
from somaagent.sre.slo.spec import LatencySLI, SLOSpec, default_specs
from somaagent.sre.slo.status import Budget, BudgetBurn, BurnRate, SLOStatus, TrendPoint

_LABEL = "soma_q"
Counts = dict[str, tuple[float | None, float | None]]  # window -> (events, bad events)


def _tagged(expr: str, tag: str) -> str:
    return f'label_replace({expr}, "{_LABEL}", "{tag}", "", "")'


def windows_of(spec: SLOSpec) -> list[str]:
    return list(dict.fromkeys([*RATE_WINDOWS, spec.window]))


def counts_query(spec: SLOSpec, windows: Sequence[str]) -> str:
    """One query for the events (``total:W``) and bad or good events (``bad:W``/``good:W``)."""
    parts: list[str] = []
    for window in windows:
        queries = event_queries(spec.sli, window)
        parts.append(_tagged(queries.total, f"total:{window}"))
        if queries.bad is not None:
            parts.append(_tagged(queries.bad, f"bad:{window}"))
        if queries.good is not None:
            parts.append(_tagged(queries.good, f"good:{window}"))
    return "\nor\n".join(parts)


class _BucketMissing(Exception):
    pass


def _counts(spec: SLOSpec, samples: list[Sample], windows: Sequence[str]) -> Counts:
    values = {s.labels.get(_LABEL, ""): s.value for s in samples}
    counts: Counts = {}
    for window in windows:
        total = values.get(f"total:{window}")
        if f"bad:{window}" in values:
            bad: float | None = values[f"bad:{window}"]
        elif f"good:{window}" in values and total is not None:
            bad = total - values[f"good:{window}"]
        elif total is not None and total > 0 and isinstance(spec.sli, LatencySLI):
            raise _BucketMissing
        else:
            bad = None
        counts[window] = (total, bad)
    return counts


def _bucket_error(spec: SLOSpec) -> str:
    assert isinstance(spec.sli, LatencySLI)
    return (
        f"{spec.sli.metric}_bucket has events but no bucket {le_matcher(spec.sli.threshold)}: "
        "a latency threshold must be one of the histogram's bucket bounds"
    )


class TrackerBase:
    """Query planning and judging: no I/O."""

    def __init__(self, specs: Sequence[SLOSpec] | None) -> None:
        self.specs: list[SLOSpec] = list(specs) if specs is not None else default_specs()

    def spec(self, name: str) -> SLOSpec:
        """The spec called ``name``.

        Raises:
            KeyError: no such SLO (the message lists the known ones).
        """
        for spec in self.specs:
            if spec.name == name:
                return spec
        known = ", ".join(s.name for s in self.specs)
        raise KeyError(f"no SLO named {name!r}; known: {known}")

    def judge(self, spec: SLOSpec, samples: list[Sample], at: datetime) -> SLOStatus:
        """One SLO's status from the samples of its :func:`counts_query` (no I/O)."""
        windows = windows_of(spec)
        query = counts_query(spec, windows)
        try:
            counts = _counts(spec, samples, windows)
        except _BucketMissing:
            return self._unknown(spec, _bucket_error(spec), at)
        budget = spec.error_budget
        ratios = {w: maths.error_ratio(bad, total) for w, (total, bad) in counts.items()}
        burns = [
            _burn_rate(
                window,
                maths.burn_rate(ratios[window.long], budget),
                maths.burn_rate(ratios[window.short], budget),
            )
            for window in BURN_WINDOWS
        ]
        events, bad = counts[spec.window]
        ratio = ratios[spec.window]
        consumed = maths.budget_consumed(ratio, budget)
        firing = [b for b in burns if b.firing]
        status = maths.judge(consumed, alert_firing=bool(firing))
        return SLOStatus(
            **_identity(spec),
            status=status,
            sli=None if ratio is None else maths.tidy(100 * (1 - ratio)),
            error_ratio=None if ratio is None else maths.tidy(ratio),
            events=None if ratio is None or events is None else maths.tidy(events),
            bad_events=None if ratio is None else maths.tidy(bad or 0.0),
            budget=Budget(
                ratio=float(budget),
                total=None
                if ratio is None or events is None
                else maths.tidy(float(budget) * events),
                consumed=consumed,
                remaining=None if consumed is None else maths.tidy(1 - consumed),
                seconds=float(spec.budget_seconds),
            ),
            burn_rates=burns,
            reason=_reason(spec, status, consumed, firing),
            query=query,
            evaluated_at=at,
        )

    def _unknown(self, spec: SLOSpec, error: str, at: datetime) -> SLOStatus:
        return SLOStatus(
            **_identity(spec),
            status="unknown",
            sli=None,
            error_ratio=None,
            events=None,
            bad_events=None,
            budget=Budget(
                ratio=float(spec.error_budget),
                total=None,
                consumed=None,
                remaining=None,
                seconds=float(spec.budget_seconds),
            ),
            burn_rates=[_burn_rate(w, None, None) for w in BURN_WINDOWS],
            reason=error,
            error=error,
            query=counts_query(spec, windows_of(spec)),
            evaluated_at=at,
        )

    def _burn_queries(self, spec: SLOSpec, start: datetime, end: datetime) -> EventQueries:
        seconds = max(1, round((end - start).total_seconds()))
        return event_queries(spec.sli, f"{seconds}s")

    def _burned(
        self,
        spec: SLOSpec,
        start: datetime,
        end: datetime,
        total: float | None,
        bad_or_good: float | None,
        queries: EventQueries,
    ) -> BudgetBurn:
        if queries.good is not None and total is not None:
            if bad_or_good is None and total > 0 and isinstance(spec.sli, LatencySLI):
                return self._burn_failed(spec, start, end, queries, _bucket_error(spec))
            bad = None if bad_or_good is None else total - bad_or_good
        else:
            bad = bad_or_good
        ratio = maths.error_ratio(bad, total)
        rate = maths.burn_rate(ratio, spec.error_budget)
        span = max(1.0, (end - start).total_seconds())
        return BudgetBurn(
            name=spec.name,
            objective=float(spec.objective),
            start=start,
            end=end,
            events=None if ratio is None or total is None else maths.tidy(total),
            bad_events=None if ratio is None else maths.tidy(bad or 0.0),
            error_ratio=ratio,
            burn_rate=rate,
            budget_consumed=None if rate is None else maths.tidy(rate * span / spec.window_seconds),
            held=None if ratio is None else ratio <= float(spec.error_budget),
            queries=[q for q in (queries.total, queries.bad, queries.good) if q is not None],
        )

    def _burn_failed(
        self, spec: SLOSpec, start: datetime, end: datetime, queries: EventQueries, error: str
    ) -> BudgetBurn:
        return BudgetBurn(
            name=spec.name,
            objective=float(spec.objective),
            start=start,
            end=end,
            events=None,
            bad_events=None,
            error_ratio=None,
            burn_rate=None,
            budget_consumed=None,
            held=None,
            queries=[q for q in (queries.total, queries.bad, queries.good) if q is not None],
            error=error,
        )

    def _trend_query(self, spec: SLOSpec) -> str:
        return counts_query(spec, [spec.window])

    def _trend(self, spec: SLOSpec, series: list[Series], grid: list[float]) -> list[TrendPoint]:
        # Prometheus leaves out the steps without data; the chart wants them, as gaps.
        by_time: dict[float, list[Sample]] = {round(t, 3): [] for t in grid}
        for one in series:
            for t, value in one.points:
                by_time.setdefault(round(t, 3), []).append(Sample(one.labels, value))
        points: list[TrendPoint] = []
        for t in sorted(by_time):
            try:
                total, bad = _counts(spec, by_time[t], [spec.window])[spec.window]
            except _BucketMissing:
                total, bad = None, None
            ratio = maths.error_ratio(bad, total)
            consumed = maths.budget_consumed(ratio, spec.error_budget)
            points.append(
                TrendPoint(
                    at=datetime.fromtimestamp(t, UTC),
                    remaining=None if consumed is None else maths.tidy(1 - consumed),
                    sli=None if ratio is None else maths.tidy(100 * (1 - ratio)),
                )
            )
        return points


def _identity(spec: SLOSpec) -> dict[str, object]:
    return {
        "name": spec.name,
        "service": spec.service,
        "description": spec.description,
        "kind": spec.sli.kind,
        "objective": float(spec.objective),
        "window": spec.window,
    }


def _burn_rate(window: maths.BurnWindow, long: float | None, short: float | None) -> BurnRate:
    factor = float(window.factor)
    return BurnRate(
        long_window=window.long,
        short_window=window.short,
        factor=factor,
        severity=window.severity,
        long_rate=long,
        short_rate=short,
        firing=long is not None and short is not None and long > factor and short > factor,
    )


def _reason(
    spec: SLOSpec, status: maths.Status, consumed: float | None, firing: list[BurnRate]
) -> str:
    if consumed is None:
        return f"no events in the last {spec.window}"
    if consumed > 1:
        spent = f"{maths.format_number(consumed)}× the error budget spent"
    else:
        spent = f"{maths.format_percent(consumed)} of the error budget consumed"
    if firing and status == "at-risk" and consumed < float(maths.BUDGET_WARNING):
        alert = firing[0]
        return (
            f"burning the budget {maths.format_number(alert.long_rate)}× over "
            f"{alert.long_window} and {maths.format_number(alert.short_rate)}× over "
            f"{alert.short_window} (alert at {maths.format_number(alert.factor)}×); {spent}"
        )
    return spent


def now() -> datetime:
    return datetime.now(UTC)


def range_grid(start: datetime, end: datetime, points: int) -> tuple[list[float], float]:
    """The evaluation times of a range query, ending at ``end`` (whole milliseconds, as
    Prometheus steps them), and the step in seconds."""
    last = round(end.timestamp(), 3)
    step = max(1.0, round((last - round(start.timestamp(), 3)) / max(1, points - 1), 3))
    count = int((last - round(start.timestamp(), 3)) // step) + 1
    return [round(last - (count - 1 - i) * step, 3) for i in range(count)], step


def value(samples: list[Sample]) -> float | None:
    return samples[0].value if samples else None
