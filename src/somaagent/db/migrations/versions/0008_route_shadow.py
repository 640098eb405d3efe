"""route shadow evaluation: the judge's score and cost on each routed answer's outcome record

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite cannot alter a table in place (add_column is fine, the drop is not)
    with op.batch_alter_table("route_outcomes") as batch:
        batch.add_column(sa.Column("shadow_score", sa.Float(), nullable=True))
        batch.add_column(sa.Column("judge_cost_usd", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("route_outcomes") as batch:
        batch.drop_column("judge_cost_usd")
        batch.drop_column("shadow_score")
