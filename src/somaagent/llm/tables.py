"""The router's tables: each routed answer's outcome record, and each tenant's promoted heads.

``route_outcomes`` holds one row per routed answer (keyed by the tenant and the message or
completion id it produced): the model, the prompt's features (so training needs no embedder),
the prediction, the cost and a reference cost, and the feedback score once given (``score``:
the explicit rating, or the shadow judge's while there is none; ``shadow_score`` and
``judge_cost_usd`` keep the judge's verdict and what it cost, whatever the tenant said).
``route_tenant_heads`` holds at most one row per tenant: its promoted quality heads and the
before/after figures of the training run that promoted them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from somaagent.db.base import Base, UTCDateTime, utcnow

__all__ = ["RouteOutcome", "TenantRouteHeads"]


class RouteOutcome(Base):
    """One routed answer and, once given, the tenant's verdict on it."""

    __tablename__ = "route_outcomes"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(200))
    evidence: Mapped[str] = mapped_column(String(80))
    predicted_quality: Mapped[float] = mapped_column(Float)
    cost_usd: Mapped[float] = mapped_column(Float)
    reference_model: Mapped[str] = mapped_column(String(200))
    reference_cost_usd: Mapped[float] = mapped_column(Float)
    features: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    feedback_source: Mapped[str | None] = mapped_column(String(20), nullable=True)
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    shadow_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    judge_cost_usd: Mapped[float | None] = mapped_column(Float, nullable=True)
    shadow_status: Mapped[str | None] = mapped_column(String(20), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    feedback_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class TenantRouteHeads(Base):
    """A tenant's promoted quality heads (``QualityHeads.to_dict``) and how they were judged."""

    __tablename__ = "route_tenant_heads"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    heads: Mapped[dict[str, Any]] = mapped_column(JSON)
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    outcomes: Mapped[int] = mapped_column(Integer)
    trained_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
