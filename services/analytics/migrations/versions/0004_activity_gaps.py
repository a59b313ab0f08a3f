"""Distinct members over any window from counters kept at ingest (activity_gaps, viewers).

Filled from the per-member rows already there, so existing data reads right at once.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from services.analytics.windows import rebuild_statements

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "activity_gaps",
        sa.Column("scope", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("gap", sa.Integer(), nullable=False),
        sa.Column("members", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "kind", "day", "gap", name="pk_activity_gaps"),
    )
    op.execute("DELETE FROM daily_counters WHERE metric = 'viewers'")
    for statement in rebuild_statements(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DELETE FROM daily_counters WHERE metric = 'viewers'")
    op.drop_table("activity_gaps")
