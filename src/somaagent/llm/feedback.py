"""Learning from a tenant's own traffic: outcome records, feedback, tenant heads and a report.

Every routed answer leaves an outcome record (:meth:`RouteFeedback.record`: the model, the
prompt's heads input ``x``, the prediction, the cost, and a *reference* cost: what the
best-predicted eligible model would have cost for the same tokens). A tenant rates answers by
message or completion id (:meth:`RouteFeedback.feedback`: a score in [0, 1], or thumbs up = 1 /
down = 0); another tenant's id, or an unknown one, is a 404.

:meth:`RouteFeedback.train` fits the tenant's own heads once enough rated outcomes exist
(:data:`MIN_RATED`, and :data:`MIN_PER_MODEL` for a model to get a head), with
:func:`~.tenant_heads.fit_tenant_heads`: a ridge regression of the score on ``x`` pulled towards
the public head of the same model, fitted on four fifths of the rated outcomes (by a hash of the
id) and judged on the other fifth against the predictions the router made at the time (Brier
score). The heads are promoted only when they do better there; the router then
uses them for that tenant (evidence "learned from tenant data"). :meth:`RouteFeedback.report`
gives per-model win rates, the savings realised against the reference, and the quality held,
before and after the tenant's heads (:mod:`.route_report`).

When the operator turns it on, the sampled shadow evaluation (:mod:`.shadow`: a stronger model
judging a share of cheaper models' answers, under a budget) scores recorded answers too; its
scores train the heads like ratings do, and a tenant's rating always replaces them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from somaagent.db.base import utcnow
from somaagent.errors import NotFoundError, ValidationError
from somaagent.llm.base import ChatMessage
from somaagent.llm.learned.heads import QualityHeads, pack_f16, unpack_f16
from somaagent.llm.policy import RoutingDecision
from somaagent.llm.registry import ModelSpec
from somaagent.llm.route_report import build_report
from somaagent.llm.router import Router
from somaagent.llm.shadow import ShadowJudge
from somaagent.llm.tables import RouteOutcome, TenantRouteHeads
from somaagent.llm.tenant_heads import (
    MIN_PER_MODEL,
    MIN_RATED,
    PROBLEM_NOT_ENOUGH_FEEDBACK,
    Rated,
    fit_tenant_heads,
    not_enough_feedback,
)

__all__ = [
    "MIN_PER_MODEL",
    "MIN_RATED",
    "PROBLEM_NOT_ENOUGH_FEEDBACK",
    "RouteFeedback",
    "score_of",
]

logger = logging.getLogger(__name__)


def score_of(score: float | None, verdict: str | None) -> float:
    """A feedback score in [0, 1] from a score or an ``up``/``down`` verdict (exactly one).

    Raises:
        ValidationError: neither or both given, or a score outside [0, 1].
    """
    if (score is None) == (verdict is None):
        raise _invalid("score", "give exactly one of 'score' (0 to 1) and 'rating' (up/down)")
    if verdict is not None:
        if verdict not in ("up", "down"):
            raise _invalid("rating", f"rating must be 'up' or 'down', not {verdict!r}")
        return 1.0 if verdict == "up" else 0.0
    assert score is not None
    if not 0.0 <= score <= 1.0 or math.isnan(score):
        raise _invalid("score", f"score must be between 0 and 1, not {score}")
    return float(score)


def _invalid(field: str, message: str) -> ValidationError:
    return ValidationError(
        message, errors=[{"loc": ["body", field], "msg": message, "type": "value_error"}]
    )


class RouteFeedback:
    """The router-feedback service; one per gateway, wired by the app factory.

    Args:
        sessions: the database's session factory.
        router: the gateway's router (its public heads are the tenant heads' prior; it asks
            :meth:`heads_for` for a tenant's promoted heads).
        shadow: the sampled shadow evaluation, when the operator turned it on.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        router: Router,
        shadow: ShadowJudge | None = None,
    ) -> None:
        self.sessions = sessions
        self.router = router
        self.shadow = shadow
        self._heads: dict[str, QualityHeads] = {}

    # -- tenant heads for the router --------------------------------------------------------

    def heads_for(self, tenant: str) -> QualityHeads | None:
        """The tenant's promoted heads (what the router's ``tenant_heads`` calls), or ``None``."""
        return self._heads.get(tenant)

    async def load(self) -> None:
        """Read every tenant's promoted heads (at start-up); an unreadable row is skipped."""
        async with self.sessions() as session:
            rows = (await session.scalars(select(TenantRouteHeads))).all()
        for row in rows:
            try:
                self._heads[row.tenant_id] = QualityHeads.from_dict(
                    row.heads, source=f"tenant {row.tenant_id!r} heads"
                )
            except Exception as exc:
                logger.warning(
                    "tenant %s: heads unreadable, public heads apply: %s", row.tenant_id, exc
                )

    # -- records and feedback ---------------------------------------------------------------

    async def record(
        self,
        tenant: str,
        outcome_id: str,
        decision: RoutingDecision,
        spec: ModelSpec,
        *,
        prompt_tokens: int,
        completion_tokens: int,
        cost_usd: float,
        messages: Sequence[ChatMessage] | None = None,
        answer: str | None = None,
    ) -> None:
        """Keep a routed answer's outcome record; never raises (a failure is logged).

        With the prompt's ``messages`` and the ``answer`` given, a kept record is offered to
        the shadow evaluation (which judges it in the background, if sampled).
        """
        try:
            eligible = [c for c in decision.candidates if c.eligible]
            reference = max(eligible, key=lambda c: c.predicted_quality).spec if eligible else spec
            ref_cost = (
                prompt_tokens * reference.input_cost_per_mtok
                + completion_tokens * reference.output_cost_per_mtok
            ) / 1_000_000
            chosen = next((c for c in decision.candidates if c.spec.name == spec.name), None)
            x = decision.estimate.x
            async with self.sessions() as session:
                session.add(
                    RouteOutcome(
                        tenant_id=tenant,
                        id=outcome_id,
                        model=spec.name,
                        evidence=decision.estimate.evidence,
                        predicted_quality=chosen.predicted_quality if chosen else 0.5,
                        cost_usd=float(cost_usd),
                        reference_model=reference.name,
                        reference_cost_usd=max(ref_cost, float(cost_usd)),
                        features={"x_f16": pack_f16(x), "n": len(x)} if x else None,
                    )
                )
                await session.commit()
        except Exception as exc:
            logger.warning("route outcome %s not recorded: %s", outcome_id, exc)
            return
        if self.shadow is not None and messages is not None and answer is not None:
            self.shadow.consider(tenant, outcome_id, spec, messages, answer)

    async def known(self, tenant: str, outcome_id: str) -> bool:
        """Whether the tenant has an outcome record with this id."""
        async with self.sessions() as session:
            return await session.get(RouteOutcome, (tenant, outcome_id)) is not None

    async def record_reply(
        self,
        tenant: str,
        outcome_id: str,
        *,
        prompt: str,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        cost_usd: float,
    ) -> bool:
        """Keep the outcome record of a stored conversation reply, made when it is first rated:
        the prompt is routed again (no model is called; its embedding is usually cached) for
        the heads' input and the predictions. ``False`` when the model is no longer known.
        """
        spec = self.router.registry.find(model)
        if spec is None:
            return False
        try:
            decision = self.router.decide([{"role": "user", "content": prompt}], tenant=tenant)
        except Exception as exc:  # the record is still worth keeping without it
            logger.warning("reply %s: could not re-route its prompt: %s", outcome_id, exc)
            return False
        await self.record(
            tenant,
            outcome_id,
            decision,
            spec,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=cost_usd,
        )
        return True

    async def feedback(
        self, tenant: str, outcome_id: str, score: float, *, comment: str | None = None
    ) -> dict[str, Any]:
        """Rate a routed answer (a later rating replaces an earlier one).

        Raises:
            NotFoundError: no routed answer of this tenant has the id.
        """
        async with self.sessions() as session:
            row = await session.get(RouteOutcome, (tenant, outcome_id))
            if row is None:
                raise NotFoundError(
                    f"no routed answer {outcome_id!r}: feedback takes the id of a message or "
                    "completion that the router chose the model for (model 'auto' or a policy)"
                )
            row.score, row.feedback_source, row.comment = score, "explicit", comment
            row.feedback_at = utcnow()
            await session.commit()
            return {"id": row.id, "model": row.model, "score": row.score}

    # -- training ---------------------------------------------------------------------------

    async def _rated(self, tenant: str) -> list[Rated]:
        async with self.sessions() as session:
            rows = (
                await session.scalars(
                    select(RouteOutcome).where(
                        RouteOutcome.tenant_id == tenant, RouteOutcome.score.is_not(None)
                    )
                )
            ).all()
        rated = []
        for r in rows:
            x = None
            if r.features and "x_f16" in r.features:
                x = unpack_f16(r.features["x_f16"], int(r.features["n"]), f"outcome {r.id}")
            rated.append(Rated(r.id, r.model, x, r.predicted_quality, float(r.score or 0.0)))
        return rated

    async def train(self, tenant: str) -> dict[str, Any]:
        """Fit the tenant's heads, judge them on held-out outcomes, promote them if better.

        Raises:
            ValidationError: too little rated data (the message says how much is needed), or
                no public heads to start from (the router has no embedder or artifact).
        """
        public = self.router.heads
        rated = await self._rated(tenant)
        if len(rated) >= MIN_RATED and (public is None or self.router.embeddings is None):
            raise ValidationError(
                "tenant training needs the router's embedding quality heads, which this gateway "
                "is running without (see the route reasons' 'fell back' note)",
                errors=[{"loc": ["body"], "msg": "no quality heads", "type": "unavailable"}],
            )
        if public is None:  # too little data as well: say what is missing first
            raise not_enough_feedback(sum(r.x is not None for r in rated))
        fit = fit_tenant_heads(tenant, public, rated)
        heads, report, promoted = fit.heads, fit.report, fit.promoted
        if promoted:
            async with self.sessions() as session:
                row = await session.get(TenantRouteHeads, tenant)
                if row is None:
                    row = TenantRouteHeads(tenant_id=tenant)
                    session.add(row)
                row.heads, row.report, row.outcomes = heads.to_dict(), report, report["rated"]
                row.trained_at = utcnow()
                await session.commit()
            self._heads[tenant] = heads
        return report

    # -- the report -------------------------------------------------------------------------

    async def report(self, tenant: str) -> dict[str, Any]:
        """Per-model calls, ratings and win rates; savings realised; quality and cost before
        and after the tenant's heads; the shadow evaluation's status; the tenant's heads."""
        async with self.sessions() as session:
            rows = (
                await session.scalars(select(RouteOutcome).where(RouteOutcome.tenant_id == tenant))
            ).all()
            heads_row = await session.get(TenantRouteHeads, tenant)
        shadow = None if self.shadow is None else await self.shadow.status(tenant)
        return build_report(tenant, rows, heads_row, shadow)

    async def aclose(self) -> None:
        """Stop: cancel the shadow judgements in flight."""
        if self.shadow is not None:
            await self.shadow.aclose()
