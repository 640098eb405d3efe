"""Date and time tools over the standard library's zoneinfo."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def _zone(name: str) -> tzinfo:
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone: {name}") from None


def now(timezone: str = "UTC") -> dict[str, Any]:
    """The current time in ``timezone``."""
    moment = datetime.now(_zone(timezone))
    return {
        "iso": moment.isoformat(),
        "unix": moment.timestamp(),
        "timezone": timezone,
        "weekday": moment.strftime("%A"),
    }


def convert(time: str, to_timezone: str) -> dict[str, Any]:
    """``time`` (ISO 8601; naive means UTC) in ``to_timezone``."""
    try:
        moment = datetime.fromisoformat(time)
    except ValueError:
        raise ValueError(f"not an ISO 8601 date-time: {time}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return {"iso": moment.astimezone(_zone(to_timezone)).isoformat(), "timezone": to_timezone}
