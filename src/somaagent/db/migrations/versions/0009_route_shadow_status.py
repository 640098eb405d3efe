"""route shadow evaluation: each outcome record's shadow status (sampled, judged, unparseable,
failed, over_budget), so the counts in the route report are durable and shared by every gateway
process

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("route_outcomes") as batch:
        batch.add_column(sa.Column("shadow_status", sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("route_outcomes") as batch:
        batch.drop_column("shadow_status")
