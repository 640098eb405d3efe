"""The delay one network fault adds, shared by the fault proxy (per chunk) and the gateway's
fault points (per call): latency ± jitter, plus, for each try that is "lost", a retransmission
timeout that doubles every time (as TCP's does), at most six times."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["MAX_RETRANSMITS", "Delay", "fault_delay"]

MAX_RETRANSMITS = 6


@dataclass(frozen=True, slots=True)
class Delay:
    """How long to hold one chunk or call, and how many of its tries were lost."""

    seconds: float
    delayed: bool
    lost: int


def fault_delay(
    rng: random.Random,
    *,
    latency_ms: float,
    jitter_ms: float,
    loss_percent: float,
    loss_rto_ms: float,
) -> Delay:
    """Draw the delay for one chunk or call (never negative)."""
    delay = latency_ms
    if jitter_ms:
        delay += rng.uniform(-jitter_ms, jitter_ms)
    rto, lost = loss_rto_ms, 0
    while loss_percent and lost < MAX_RETRANSMITS and rng.random() * 100 < loss_percent:
        delay += rto
        rto *= 2
        lost += 1
    return Delay(seconds=max(delay, 0.0) / 1000, delayed=bool(latency_ms or jitter_ms), lost=lost)
