"""Segment membership snapshots (per-segment metrics) and campaign targets (funnel "reached").

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from shared.db import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "segment_snapshots",
        sa.Column("segment_id", sa.String(36), nullable=False),
        sa.Column("fetched_at", UtcDateTime(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("segment_id", name="pk_segment_snapshots"),
    )
    op.create_table(
        "segment_members",
        sa.Column("segment_id", sa.String(36), nullable=False),
        sa.Column("member_id", sa.String(36), nullable=False),
        sa.PrimaryKeyConstraint("segment_id", "member_id", name="pk_segment_members"),
    )
    op.create_table(
        "campaign_targets",
        sa.Column("campaign_id", sa.String(36), nullable=False),
        sa.Column("community_id", sa.String(36), nullable=False),
        sa.Column("segment_id", sa.String(36), nullable=True),
        sa.Column("starts_at", UtcDateTime(), nullable=False),
        sa.Column("ends_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", name="pk_campaign_targets"),
    )


def downgrade() -> None:
    op.drop_table("campaign_targets")
    op.drop_table("segment_members")
    op.drop_table("segment_snapshots")
