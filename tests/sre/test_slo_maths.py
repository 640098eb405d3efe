"""Budget maths on hand-computed figures, with no Prometheus: the tracker judges samples."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from somaagent.sre.slo import SLOSpec, SLOStatus
from somaagent.sre.slo._tracking import TrackerBase
from somaagent.sre.slo.maths import (
    BURN_WINDOWS,
    budget_consumed,
    burn_rate,
    error_ratio,
    format_number,
    format_percent,
    judge,
    tidy,
)
from somaagent.sre.slo.prometheus import Sample

AT = datetime(2026, 1, 1, tzinfo=UTC)


def _availability(objective: str = "99.9") -> SLOSpec:
    return SLOSpec.model_validate(
        {
            "name": "api",
            "service": "api",
            "objective": objective,
            "sli": {"kind": "ratio", "metric": "requests_total", "bad": ['code=~"5.."']},
        }
    )


def _judge(spec: SLOSpec, counts: dict[str, tuple[float, float]]) -> SLOStatus:
    """The tracker's verdict for ``{window: (events, bad events)}``, without any I/O."""
    samples = []
    for window, (total, bad) in counts.items():
        samples.append(Sample({"soma_q": f"total:{window}"}, total))
        samples.append(Sample({"soma_q": f"bad:{window}"}, bad))
    return TrackerBase([spec]).judge(spec, samples, AT)


def _steady(total: float, bad: float) -> dict[str, tuple[float, float]]:
    windows = ("5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d")
    return {w: (total, bad) for w in windows}


def test_ratio_burn_and_budget_by_hand() -> None:
    # 5 failures in 10,000 requests against 99.9%: ratio 0.0005, burn 0.5x, half the budget.
    ratio = error_ratio(5, 10_000)
    assert ratio == 0.0005
    assert burn_rate(ratio, Decimal("0.001")) == 0.5
    assert budget_consumed(ratio, Decimal("0.001")) == 0.5
    assert burn_rate(0.0144, Decimal("0.001")) == 14.4  # not 14.399999999999999
    assert error_ratio(None, 100) == 0.0  # no bad series yet: nothing failed
    assert error_ratio(101, 100) == 1.0  # extrapolation noise is clamped


@pytest.mark.parametrize("total", [None, 0.0, -1.0, math.nan, math.inf])
def test_no_traffic_is_no_data_never_nan(total: float | None) -> None:
    assert error_ratio(0, total) is None
    assert burn_rate(None, Decimal("0.001")) is None
    assert judge(None, alert_firing=False) == "no-data"


def test_status_thresholds() -> None:
    assert judge(0.0, alert_firing=False) == "healthy"
    assert judge(0.899, alert_firing=False) == "healthy"
    assert judge(0.9, alert_firing=False) == "at-risk"
    assert judge(0.999, alert_firing=False) == "at-risk"
    assert judge(1.0, alert_firing=False) == "violated"
    assert judge(0.1, alert_firing=True) == "at-risk"
    assert judge(3.0, alert_firing=True) == "violated"


def test_the_workbooks_burn_rate_windows() -> None:
    assert [(w.long, w.short, w.factor, w.severity) for w in BURN_WINDOWS] == [
        ("1h", "5m", Decimal("14.4"), "critical"),
        ("6h", "30m", Decimal(6), "critical"),
        ("1d", "2h", Decimal(3), "warning"),
        ("3d", "6h", Decimal(1), "warning"),
    ]


def test_tracker_judges_a_healthy_slo() -> None:
    status = _judge(_availability(), _steady(10_000, 5))
    assert status.status == "healthy"
    assert status.sli == 99.95
    assert status.error_ratio == 0.0005
    assert (status.events, status.bad_events) == (10_000, 5)
    assert status.budget.ratio == 0.001
    assert status.budget.total == 10  # 0.1% of 10,000 requests may fail
    assert (status.budget.consumed, status.budget.remaining) == (0.5, 0.5)
    assert status.budget.seconds == 2592
    assert [b.long_rate for b in status.burn_rates] == [0.5] * 4
    assert not any(b.firing for b in status.burn_rates)
    assert status.reason == "50% of the error budget consumed"


def test_a_fast_burn_is_at_risk_before_the_budget_is_spent() -> None:
    counts = _steady(100_000, 20)  # 20% of the budget over the window
    counts["1h"] = (1_000, 20)  # but 2% failing in the last hour: 20x
    counts["5m"] = (100, 2)
    status = _judge(_availability(), counts)
    assert status.status == "at-risk"
    page = status.burn_rates[0]
    assert (page.long_rate, page.short_rate, page.firing) == (20, 20, True)
    assert status.budget.consumed == 0.2
    assert status.reason == (
        "burning the budget 20× over 1h and 20× over 5m (alert at 14.4×); "
        "20% of the error budget consumed"
    )


def test_ninety_percent_spent_is_at_risk_and_all_of_it_is_violated() -> None:
    assert _judge(_availability(), _steady(10_000, 9)).status == "at-risk"
    violated = _judge(_availability(), _steady(10_000, 30))
    assert violated.status == "violated"
    assert violated.budget.remaining == -2
    assert violated.reason == "3× the error budget spent"


def test_silence_in_a_short_window_is_no_data_there_not_zero() -> None:
    counts = _steady(10_000, 5)
    counts["5m"] = (0, 0)
    status = _judge(_availability(), counts)
    assert status.burn_rates[0].short_rate is None
    assert status.burn_rates[0].firing is False
    assert status.status == "healthy"


def test_a_window_without_traffic_is_no_data() -> None:
    status = _judge(_availability(), {})
    assert status.status == "no-data"
    assert status.sli is None and status.budget.consumed is None and status.events is None
    assert "NaN" not in status.model_dump_json()


def test_latency_counts_bad_events_from_the_bucket() -> None:
    spec = SLOSpec.model_validate(
        {
            "name": "fast",
            "service": "api",
            "objective": 95,
            "sli": {"kind": "latency", "metric": "request_seconds", "threshold": 0.2},
        }
    )
    tracker = TrackerBase([spec])
    windows = ("5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d")
    samples = [Sample({"soma_q": f"total:{w}"}, 1_000) for w in windows]
    samples += [Sample({"soma_q": f"good:{w}"}, 970) for w in windows]
    status = tracker.judge(spec, samples, AT)
    assert (status.error_ratio, status.budget.consumed, status.status) == (0.03, 0.6, "healthy")
    missing = tracker.judge(spec, samples[: len(windows)], AT)  # events but no such bucket
    assert missing.status == "unknown"
    assert missing.error is not None and "bucket" in missing.error


def test_numbers_carry_no_float_noise() -> None:
    assert tidy(0.1 + 0.2) == 0.3 and repr(tidy(0.1 + 0.2)) == "0.3"
    assert tidy(1 - 0.7) == 0.3
    assert format_percent(1 - 0.7) == "30%"
    assert format_percent(0.999) == "99.9%"
    assert format_percent(0.99999) == "100%"
    assert format_percent(None) == "—"
    assert format_number(14.4 * 0.001) == "0.0144"
    assert format_number(2592000) == "2592000"
    assert format_number(1 / 3) == "0.3333"
