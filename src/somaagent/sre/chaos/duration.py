"""Go-style durations (``"100ms"``, ``"2m"``, ``"1h30m"``), as Chaos Mesh and k6 write them.

Specs accept such a string or a number of seconds; both become a :class:`~datetime.timedelta`.
A negative duration is an error, so a spec can never ask for one.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

__all__ = ["Duration", "format_duration", "parse_duration"]

_UNITS: dict[str, float] = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")


def parse_duration(value: object) -> timedelta:
    """A duration from a Go-style string, a number of seconds or a timedelta.

    Raises:
        ValueError: the value is not a duration, or is negative.
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ValueError("a duration such as '30s' or '5m', not a boolean")
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_text(value.strip())
    else:
        raise ValueError("a duration such as '30s' or '5m'")
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise ValueError("a finite duration")
    if seconds < 0:
        raise ValueError("must not be negative")
    return timedelta(seconds=seconds)


def _parse_text(text: str) -> float:
    negative = text.startswith("-")
    body = text.lstrip("+-")
    if body in ("0", ""):
        if body == "":
            raise ValueError("a duration such as '30s' or '5m', not an empty string")
        return 0.0
    position, total = 0, 0.0
    for match in _PART.finditer(body):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(body):
        raise ValueError(f"{text!r} is not a duration such as '30s', '5m' or '1h30m'")
    return -total if negative else total


def format_duration(value: timedelta) -> str:
    """The shortest Go duration string for ``value`` (``"2m"``, ``"1h30m"``, ``"150ms"``).

    Go's ``time.ParseDuration`` and k6 both accept the result (no ``d`` unit is used).
    """
    micros = round(value.total_seconds() * 1_000_000)
    if micros < 0:
        raise ValueError("must not be negative")
    if micros == 0:
        return "0s"
    if micros % 1000:
        return f"{micros}us"
    millis = micros // 1000
    if millis % 1000:
        return f"{millis}ms" if millis < 1000 else _hms(millis // 1000) + f"{millis % 1000}ms"
    return _hms(millis // 1000)


def _hms(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
        f"{secs}s" if secs else "",
    ]
    return "".join(parts) or "0s"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]
"""A non-negative duration in a spec: ``"30s"``, ``"5m"``, ``"1h30m"`` or seconds."""
