"""Per-API-key rate limiting: a token bucket per key, in process.

The bucket holds ``per_minute`` tokens and refills continuously, so a key may burst up to
its minute's allowance and then proceeds at the steady rate. A refused request learns how
many seconds until one token is back (``Retry-After``). Several gateway replicas each
enforce their own bucket; a shared Redis limiter is the scale-out path (DESIGN.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from somaagent.errors import RateLimitError


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets keyed by API key id. ``per_minute=0`` turns limiting off."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._rate = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def check(self, key: str) -> None:
        """Take one token for ``key`` or raise :class:`RateLimitError` with ``retry_after``."""
        if self.per_minute <= 0:
            return
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=float(self.per_minute), updated=now)
        else:
            bucket.tokens = min(
                float(self.per_minute), bucket.tokens + (now - bucket.updated) * self._rate
            )
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return
        wait = (1.0 - bucket.tokens) / self._rate
        raise RateLimitError(
            f"rate limit of {self.per_minute} requests per minute exceeded for this API key",
            retry_after=float(math.ceil(wait)),
        )
