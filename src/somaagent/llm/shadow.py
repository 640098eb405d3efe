"""Sampled shadow evaluation: a stronger model judges a share of cheaper models' routed answers.

Off unless the operator turns it on (``SOMA_ROUTE_SHADOW_RATE`` > 0 and a judge model,
``SOMA_ROUTE_SHADOW_JUDGE``, from the registry). When a routed answer came from a model whose
list price (input + output per million tokens) is below the judge's, it is picked with
probability ``rate``; the judge then grades the answer for the prompt on a 1-10 scale in a
background task, after the reply has gone out, so it never delays or fails the user's request.

The grade ``r`` becomes a score ``(r - 1) / 9`` in [0, 1]. It is kept on the outcome record as
``shadow_score`` and, while the tenant has not rated the answer, as its ``score`` with
``feedback_source = "shadow"``, so ``soma route train`` learns from it. Explicit feedback always
wins: a rating replaces a shadow score, and the judge's write is conditional on no explicit
rating being there (one UPDATE, so a rating that lands while the judge works is not lost).

Budget: ``budget_usd`` per tenant per UTC day. A judgement starts only when the tenant's
judge spend today (``judge_cost_usd`` of its outcomes created today, from the database, so
every gateway process sees the same figure) plus the in-flight judgements of this process
(each counted at its worst case: the prompt's tokens and ``max_tokens`` of output) plus its own
worst case stays within the budget. Processes judging at the same instant may each count
without the other's in-flight spend, so several processes can overshoot by their in-flight
judgements at most.

A judge that fails, or a reply with no readable grade, is logged, never raised. Each sampled
answer's outcome record keeps its ``shadow_status`` (in flight, judged, unparseable, failed or
over budget), so ``soma route report`` counts them from the database: the same figures from
every gateway process, and across restarts. An unreadable reply's cost is still charged.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from somaagent.db.base import utcnow
from somaagent.llm import cost, tokens
from somaagent.llm.base import ChatMessage, ChatRequest, Model
from somaagent.llm.registry import ModelRegistry
from somaagent.llm.specs import ModelSpec
from somaagent.llm.tables import RouteOutcome

__all__ = ["JUDGE_MAX_CHARS", "ShadowConfig", "ShadowJudge", "judge_messages", "parse_grade"]

logger = logging.getLogger(__name__)

JUDGE_MAX_CHARS = 8000
SAMPLED, JUDGED, UNPARSEABLE, FAILED, OVER_BUDGET = (
    "sampled",
    "judged",
    "unparseable",
    "failed",
    "over_budget",
)
"""An outcome record's ``shadow_status``: picked and in flight, then how its judgement ended."""
"""The most characters of the prompt, and of the answer, shown to the judge (bounds its cost)."""

_SYSTEM = (
    "You are an impartial judge of an AI assistant's answers. You rate one answer to one request."
)
_INSTRUCTIONS = (
    "Rate how well the answer serves the request: correctness first, then helpfulness, "
    "relevance, completeness and clarity. Explain briefly, then give the rating, a whole "
    "number from 1 (useless) to 10 (excellent), in double square brackets on the last line, "
    "like this: [[rating]]."
)
_GRADE = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")

AdapterFor = Callable[[ModelSpec], Awaitable[Model]]


@dataclass(frozen=True, slots=True)
class ShadowConfig:
    """What the operator set.

    Attributes:
        rate: the share of eligible routed answers to judge (0 turns it off).
        judge: the registry name of the judging model.
        budget_usd: the most judging may cost per tenant per UTC day.
        max_tokens: the judge's answer limit (also its worst case in the budget).
    """

    rate: float
    judge: str
    budget_usd: float
    max_tokens: int = 256


def judge_messages(messages: Sequence[ChatMessage], answer: str) -> list[ChatMessage]:
    """The judge's conversation: the last user request and the answer, each cut to
    :data:`JUDGE_MAX_CHARS` characters."""
    request = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    body = (
        f"{_INSTRUCTIONS}\n\n[Request]\n{request[:JUDGE_MAX_CHARS]}\n\n"
        f"[Answer]\n{answer[:JUDGE_MAX_CHARS]}"
    )
    return [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": body}]


def parse_grade(reply: str) -> float | None:
    """The score in [0, 1] from the judge's last ``[[r]]`` (r from 1 to 10), or ``None``."""
    found = _GRADE.findall(reply)
    if not found:
        return None
    grade = float(found[-1])
    if not 1.0 <= grade <= 10.0:
        return None
    return (grade - 1.0) / 9.0


def _day_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


class ShadowJudge:
    """Samples routed answers, has the judge grade them in the background, keeps the scores.

    Args:
        sessions: the database's session factory.
        registry: the model registry (the judge is looked up by name when judging, so a
            reloaded registry's prices apply).
        adapter_for: the provider adapter for a model (the gateway's provider pool).
        config: the operator's settings.
        rng: the sampler (tests pass a seeded one).
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        registry: ModelRegistry,
        adapter_for: AdapterFor,
        config: ShadowConfig,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.sessions = sessions
        self.registry = registry
        self.adapter_for = adapter_for
        self.config = config
        self._rng = rng or random.Random()
        self._tasks: set[asyncio.Task[None]] = set()
        self._reserved: dict[str, float] = {}
        self._lock = asyncio.Lock()

    # -- sampling ---------------------------------------------------------------------------

    def judge_spec(self) -> ModelSpec | None:
        """The judge's registry entry (``None`` when the name is not in the registry)."""
        return self.registry.find(self.config.judge)

    def eligible(self, spec: ModelSpec) -> bool:
        """Whether an answer of ``spec`` may be judged: it is cheaper than the judge."""
        judge = self.judge_spec()
        if judge is None or self.config.rate <= 0:
            return False
        price = spec.input_cost_per_mtok + spec.output_cost_per_mtok
        return price < judge.input_cost_per_mtok + judge.output_cost_per_mtok

    def consider(
        self,
        tenant: str,
        outcome_id: str,
        spec: ModelSpec,
        messages: Sequence[ChatMessage],
        answer: str,
    ) -> bool:
        """Sample a recorded routed answer; when picked, judge it in a background task.

        Returns:
            Whether a judgement was scheduled.
        """
        if not self.eligible(spec) or self._rng.random() >= self.config.rate:
            return False
        task = asyncio.get_running_loop().create_task(
            self._run(tenant, outcome_id, list(messages), answer)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _run(
        self, tenant: str, outcome_id: str, messages: list[ChatMessage], answer: str
    ) -> None:
        try:
            await self._mark(tenant, outcome_id, SAMPLED)
            await self.judge(tenant, outcome_id, messages, answer)
        except Exception as exc:  # the background task must never raise
            logger.warning("shadow judgement of %s failed: %s", outcome_id, exc)
            try:
                await self._mark(tenant, outcome_id, FAILED)
            except Exception as mark_exc:
                logger.warning("shadow status of %s not kept: %s", outcome_id, mark_exc)

    # -- judging ----------------------------------------------------------------------------

    def estimate_usd(self, messages: Sequence[ChatMessage], answer: str) -> float:
        """A judgement's worst-case cost: the judge's prompt tokens and ``max_tokens`` out."""
        judge = self.judge_spec()
        if judge is None:
            return 0.0
        prompt = tokens.count_messages(judge_messages(messages, answer), judge)
        return cost.estimate_cost(judge, prompt, self.config.max_tokens)

    async def spent_today(self, tenant: str) -> float:
        """The tenant's judge spend on outcomes created today (UTC), from the database."""
        async with self.sessions() as session:
            total = await session.scalar(
                select(func.coalesce(func.sum(RouteOutcome.judge_cost_usd), 0.0)).where(
                    RouteOutcome.tenant_id == tenant,
                    RouteOutcome.created_at >= _day_start(utcnow()),
                )
            )
        return float(total or 0.0)

    async def judge(
        self, tenant: str, outcome_id: str, messages: Sequence[ChatMessage], answer: str
    ) -> float | None:
        """Grade one answer now, within the budget; keep the score and the cost.

        Returns:
            The score in [0, 1], or ``None`` (over budget, judge failed, no readable grade).
        """
        judge = self.judge_spec()
        if judge is None:
            await self._mark(tenant, outcome_id, FAILED)
            logger.warning("shadow judge %r is not in the registry", self.config.judge)
            return None
        worst = self.estimate_usd(messages, answer)
        async with self._lock:  # one budget check at a time, so reservations add up
            # The reservations are read before the spend: a judgement that ends during the
            # query commits its cost before it drops its reservation, so it is counted at least
            # once (read after, it could be in neither).
            reserved = self._reserved.get(tenant, 0.0)
            spent = await self.spent_today(tenant) + reserved
            if spent + worst > self.config.budget_usd:
                await self._mark(tenant, outcome_id, OVER_BUDGET)
                return None
            self._reserved[tenant] = self._reserved.get(tenant, 0.0) + worst
        try:
            return await self._judge(tenant, outcome_id, judge, messages, answer)
        finally:
            self._reserved[tenant] -= worst

    async def _judge(
        self,
        tenant: str,
        outcome_id: str,
        judge: ModelSpec,
        messages: Sequence[ChatMessage],
        answer: str,
    ) -> float | None:
        request = ChatRequest(
            messages=judge_messages(messages, answer),
            model=judge.provider_model_id,
            max_tokens=self.config.max_tokens,
            temperature=0.0,
        )
        try:
            completion = await (await self.adapter_for(judge)).complete(request)
        except Exception as exc:
            await self._mark(tenant, outcome_id, FAILED)
            logger.warning("shadow judge %s failed on %s: %s", judge.name, outcome_id, exc)
            return None
        spent = float(cost.cost_usd(judge, completion.usage))
        score = parse_grade(completion.content)
        if score is None:
            logger.warning(
                "shadow judge %s gave no readable 1-10 grade for %s: %.200r",
                judge.name,
                outcome_id,
                completion.content,
            )
        await self._keep(tenant, outcome_id, score, spent)
        return score

    async def _keep(self, tenant: str, outcome_id: str, score: float | None, spent: float) -> None:
        where = (RouteOutcome.tenant_id == tenant, RouteOutcome.id == outcome_id)
        async with self.sessions() as session:
            await session.execute(
                update(RouteOutcome)
                .where(*where)
                .values(
                    shadow_score=score,
                    judge_cost_usd=spent,
                    shadow_status=UNPARSEABLE if score is None else JUDGED,
                )
            )
            if score is not None:
                # never over an explicit rating, even one given while the judge worked
                await session.execute(
                    update(RouteOutcome)
                    .where(
                        *where,
                        or_(
                            RouteOutcome.feedback_source.is_(None),
                            RouteOutcome.feedback_source == "shadow",
                        ),
                    )
                    .values(score=score, feedback_source="shadow", feedback_at=utcnow())
                )
            await session.commit()

    # -- bookkeeping ------------------------------------------------------------------------

    async def _mark(self, tenant: str, outcome_id: str, status: str) -> None:
        async with self.sessions() as session:
            await session.execute(
                update(RouteOutcome)
                .where(RouteOutcome.tenant_id == tenant, RouteOutcome.id == outcome_id)
                .values(shadow_status=status)
            )
            await session.commit()

    async def status(self, tenant: str) -> dict[str, Any]:
        """The settings, and the tenant's spend and counts today (UTC), from the database:
        ``sampled`` answers, and how many of them were ``judged``, had no readable grade
        (``unparseable``), ``failed``, went ``over_budget`` or are still ``in_flight``."""
        async with self.sessions() as session:
            rows = (
                await session.execute(
                    select(RouteOutcome.shadow_status, func.count())
                    .where(
                        RouteOutcome.tenant_id == tenant,
                        RouteOutcome.shadow_status.is_not(None),
                        RouteOutcome.created_at >= _day_start(utcnow()),
                    )
                    .group_by(RouteOutcome.shadow_status)
                )
            ).all()
        counts = {str(status): int(n) for status, n in rows}
        return {
            "rate": self.config.rate,
            "judge": self.config.judge,
            "judge_in_registry": self.judge_spec() is not None,
            "budget_usd": self.config.budget_usd,
            "spent_today_usd": round(await self.spent_today(tenant), 6),
            "sampled": sum(counts.values()),
            **{k: counts.get(k, 0) for k in (JUDGED, UNPARSEABLE, FAILED, OVER_BUDGET)},
            "in_flight": counts.get(SAMPLED, 0),
        }

    async def drain(self) -> None:
        """Wait for the judgements in flight (tests; a graceful stop)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        """Cancel the judgements in flight (the gateway is stopping)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
