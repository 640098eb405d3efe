"""Usage and monthly budgets per API key.

Every model call the gateway makes is charged to the calling key: its tokens and cost go to
``usage_records``. Calls are summed in memory per key, endpoint and model and written once a
second (one row per group), so the chat hot path never waits on a database write and a busy
gateway writes a handful of rows a second, not one per call. A key with a ``monthly_budget_usd`` is
refused (429 ``budget-exceeded``, ``Retry-After`` = seconds to the next month, UTC) once its
spend this month — stored plus still buffered — reaches the budget; the stored part is read at
most every few seconds per key.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from somaagent.accounts.keys import Principal
from somaagent.accounts.tables import ApiKey, UsageRecord
from somaagent.db import new_id, utcnow
from somaagent.errors import BudgetExceededError
from somaagent.types import Usage

SPEND_CACHE_SECONDS = 5.0

_Group = tuple[str, str, str, str, str]  # tenant, key id, endpoint, model, provider


def month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(now: datetime) -> datetime:
    start = month_start(now)
    return (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )


@dataclass(frozen=True, slots=True)
class Spend:
    """A key's spend this month against its budget (``None``: no budget)."""

    spent_usd: float
    budget_usd: float | None


class UsageLedger:
    """Buffers usage records, writes them in batches, and enforces monthly budgets."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, flush_interval: float = 1.0
    ) -> None:
        self.sessions = sessions
        self.flush_interval = flush_interval
        self._pending: dict[_Group, list[float]] = {}  # -> requests, prompt, completion, cost
        self._pending_cost: dict[str, float] = {}  # key -> cost of its buffered calls
        self._stored: dict[str, tuple[float, float | None, float]] = {}  # key -> spent, budget, at
        self._task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._flush_forever())

    async def aclose(self) -> None:
        if self._task is not None:
            # Never cancel a flush half-way: its transaction could be left holding SQLite's
            # write lock, and the last flush below then waited out the busy timeout and
            # failed with "database is locked". Under the lock the flusher is asleep.
            async with self._flush_lock:
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    def record(
        self,
        who: Principal,
        *,
        endpoint: str,
        model: str,
        provider: str,
        usage: Usage,
        cost_usd: float,
    ) -> None:
        """Charge one model call to ``who``'s key (written within ``flush_interval``)."""
        group = (who.tenant, who.key_id, endpoint, model, provider)
        sums = self._pending.get(group)
        if sums is None:
            sums = self._pending[group] = [0, 0, 0, 0.0]
        sums[0] += 1
        sums[1] += usage.prompt_tokens
        sums[2] += usage.completion_tokens
        sums[3] += cost_usd
        self._pending_cost[who.key_id] = self._pending_cost.get(who.key_id, 0.0) + cost_usd

    async def flush(self) -> None:
        async with self._flush_lock:
            batch, self._pending = self._pending, {}
            if not batch:
                return
            now = utcnow()
            rows = [
                UsageRecord(
                    id=new_id("use"),
                    tenant_id=tenant,
                    api_key_id=key_id,
                    endpoint=endpoint,
                    model=model,
                    provider=provider,
                    requests=int(sums[0]),
                    prompt_tokens=int(sums[1]),
                    completion_tokens=int(sums[2]),
                    cost_usd=round(sums[3], 10),
                    created_at=now,
                )
                for (tenant, key_id, endpoint, model, provider), sums in batch.items()
            ]
            try:
                async with self.sessions() as session:
                    session.add_all(rows)
                    await session.commit()
            except BaseException:
                self._requeue(batch)  # nothing charged is lost: the next flush writes it
                raise
            for row in rows:
                left = self._pending_cost.get(row.api_key_id, 0.0) - row.cost_usd
                if left > 1e-12:
                    self._pending_cost[row.api_key_id] = left
                else:
                    self._pending_cost.pop(row.api_key_id, None)
            for row in rows:
                cached = self._stored.get(row.api_key_id)
                if cached is not None:
                    spent, budget, at = cached
                    self._stored[row.api_key_id] = (spent + row.cost_usd, budget, at)

    def _requeue(self, batch: dict[_Group, list[float]]) -> None:
        for group, sums in batch.items():
            pending = self._pending.setdefault(group, [0, 0, 0, 0.0])
            for index, value in enumerate(sums):
                pending[index] += value

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            with contextlib.suppress(Exception):  # a failed batch is retried by the next flush
                await self.flush()

    async def spend(self, who: Principal) -> Spend:
        """This month's spend of ``who``'s key, stored and buffered."""
        now = time.monotonic()
        cached = self._stored.get(who.key_id)
        if cached is None or now - cached[2] > SPEND_CACHE_SECONDS:
            async with self.sessions() as session:
                budget = await session.scalar(
                    select(ApiKey.monthly_budget_usd).where(ApiKey.id == who.key_id)
                )
                stored = await session.scalar(
                    select(func.coalesce(func.sum(UsageRecord.cost_usd), 0.0)).where(
                        UsageRecord.api_key_id == who.key_id,
                        UsageRecord.created_at >= month_start(datetime.now(UTC)),
                    )
                )
            cached = (float(stored or 0.0), budget, now)
            self._stored[who.key_id] = cached
        pending = self._pending_cost.get(who.key_id, 0.0)
        return Spend(spent_usd=round(cached[0] + pending, 10), budget_usd=cached[1])

    async def check_budget(self, who: Principal) -> None:
        """Raise :class:`BudgetExceededError` when ``who``'s key has spent its budget."""
        spend = await self.spend(who)
        if spend.budget_usd is not None and spend.spent_usd >= spend.budget_usd:
            now = datetime.now(UTC)
            raise BudgetExceededError(
                f"this API key has spent ${spend.spent_usd:.4f} of its monthly budget of "
                f"${spend.budget_usd:.2f}; it resets on {next_month(now):%Y-%m-%d} (UTC)",
                retry_after=(next_month(now) - now).total_seconds(),
            )

    def forget(self, key_id: str) -> None:
        """Drop the cached spend of a key (after its budget changed)."""
        self._stored.pop(key_id, None)
