"""The raw event store (every consumed event once) and rebuilds of the rollups from it.

Rollups written before this migration have no raw events behind them: a rebuild
refuses to run while the rollups hold more events than the store (see rebuild.py).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

from shared.db import UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "raw_events",
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("subject", sa.String(200), nullable=True),
        sa.Column("time", UtcDateTime(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("member_id", sa.String(64), nullable=True),
        sa.Column("related_id", sa.String(64), nullable=True),
        sa.Column("received_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_raw_events"),
    )
    op.create_index("ix_raw_events_time", "raw_events", ["time", "event_id"])
    op.create_index("ix_raw_events_member_id", "raw_events", ["member_id"])
    op.create_index("ix_raw_events_related_id", "raw_events", ["related_id"])
    op.create_table(
        "rebuilds",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("batch_size", sa.Integer(), nullable=False),
        sa.Column("events_total", sa.Integer(), nullable=False),
        sa.Column("events_done", sa.Integer(), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("finished_at", UtcDateTime(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_rebuilds"),
    )
    op.create_index("ix_rebuilds_started", "rebuilds", ["started_at", "id"])


def downgrade() -> None:
    op.drop_table("rebuilds")
    op.drop_table("raw_events")
