"""Rollups for activity, interaction, heatmap, funnels, retention and contributor scores.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from shared.db import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "daily_counters",
        sa.Column("scope", sa.String(36), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("metric", sa.String(40), nullable=False),
        sa.Column("dimension", sa.String(64), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "day", "metric", "dimension", name="pk_daily_counters"),
    )
    op.create_table(
        "member_activity_days",
        sa.Column("scope", sa.String(36), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("member_id", sa.String(36), nullable=False),
        sa.PrimaryKeyConstraint("scope", "day", "member_id", name="pk_member_activity_days"),
    )
    op.create_index(
        "ix_member_activity_days_member", "member_activity_days", ["scope", "member_id", "day"]
    )
    op.create_table(
        "scope_members",
        sa.Column("scope", sa.String(36), nullable=False),
        sa.Column("member_id", sa.String(36), nullable=False),
        sa.Column("joined_on", sa.Date(), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("left_on", sa.Date(), nullable=True),
        sa.PrimaryKeyConstraint("scope", "member_id", name="pk_scope_members"),
    )
    op.create_index("ix_scope_members_joined", "scope_members", ["scope", "joined_on"])
    op.create_table(
        "member_event_days",
        sa.Column("scope", sa.String(36), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("member_id", sa.String(36), nullable=False),
        sa.Column("first_at", UtcDateTime(), nullable=False),
        sa.Column("last_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint(
            "scope", "event_type", "day", "member_id", name="pk_member_event_days"
        ),
    )
    op.create_index("ix_member_event_days_member_id", "member_event_days", ["member_id"])
    op.create_table(
        "hourly_activity",
        sa.Column("scope", sa.String(36), nullable=False),
        sa.Column("hour_start", UtcDateTime(), nullable=False),
        sa.Column("actions", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "hour_start", name="pk_hourly_activity"),
    )
    op.create_table(
        "member_score_days",
        sa.Column("scope", sa.String(36), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("member_id", sa.String(36), nullable=False),
        sa.Column("initiated", sa.Float(), nullable=False),
        sa.Column("received", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "day", "member_id", name="pk_member_score_days"),
    )
    op.create_index("ix_member_score_days_member_id", "member_score_days", ["member_id"])
    op.create_table(
        "post_stats",
        sa.Column("post_id", sa.String(36), nullable=False),
        sa.Column("community_id", sa.String(36), nullable=False),
        sa.Column("author_id", sa.String(36), nullable=True),
        sa.Column("author_kind", sa.String(16), nullable=True),
        sa.Column("post_type", sa.String(32), nullable=True),
        sa.Column("published_at", UtcDateTime(), nullable=True),
        sa.Column("comments", sa.Integer(), nullable=False),
        sa.Column("reactions", sa.Integer(), nullable=False),
        sa.Column("shares", sa.Integer(), nullable=False),
        sa.Column("answers", sa.Integer(), nullable=False),
        sa.Column("views", sa.Integer(), nullable=False),
        sa.Column("views_via_share", sa.Integer(), nullable=False),
        sa.Column("reach", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("post_id", name="pk_post_stats"),
    )
    op.create_index("ix_post_stats_community", "post_stats", ["community_id", "published_at"])
    op.create_index("ix_post_stats_author_id", "post_stats", ["author_id"])
    op.create_index("ix_post_stats_published_at", "post_stats", ["published_at"])
    op.create_table(
        "post_viewers",
        sa.Column("post_id", sa.String(36), nullable=False),
        sa.Column("member_id", sa.String(36), nullable=False),
        sa.PrimaryKeyConstraint("post_id", "member_id", name="pk_post_viewers"),
    )
    op.create_index("ix_post_viewers_member_id", "post_viewers", ["member_id"])
    op.create_table(
        "campaign_member_steps",
        sa.Column("campaign_id", sa.String(36), nullable=False),
        sa.Column("step", sa.String(32), nullable=False),
        sa.Column("member_id", sa.String(36), nullable=False),
        sa.Column("first_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint(
            "campaign_id", "step", "member_id", name="pk_campaign_member_steps"
        ),
    )
    op.create_index("ix_campaign_member_steps_member_id", "campaign_member_steps", ["member_id"])
    op.create_table(
        "communities",
        sa.Column("community_id", sa.String(36), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("community_id", name="pk_communities"),
    )
    op.create_table(
        "staff_members",
        sa.Column("member_id", sa.String(36), nullable=False),
        sa.PrimaryKeyConstraint("member_id", name="pk_staff_members"),
    )
    op.create_table(
        "erased_members",
        sa.Column("member_id", sa.String(36), nullable=False),
        sa.Column("erased_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("member_id", name="pk_erased_members"),
    )
    op.create_table(
        "freshness",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("as_of", UtcDateTime(), nullable=False),
        sa.Column("applied_at", UtcDateTime(), nullable=False),
        sa.Column("events_applied", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_freshness"),
    )


def downgrade() -> None:
    for table in (
        "freshness",
        "erased_members",
        "staff_members",
        "communities",
        "campaign_member_steps",
        "post_viewers",
        "post_stats",
        "member_score_days",
        "hourly_activity",
        "member_event_days",
        "scope_members",
        "member_activity_days",
        "daily_counters",
    ):
        op.drop_table(table)
