"""Campaigns, participation, grants, and replicas of communities, memberships and posts.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
ID = sa.String(36)


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("objective", sa.String(32), nullable=False),
        sa.Column("community_id", ID, nullable=False),
        sa.Column("segment_id", ID, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("starts_at", TS, nullable=False),
        sa.Column("ends_at", TS, nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("budget_points", sa.Integer(), nullable=True),
        sa.Column("budget_coupons", sa.Integer(), nullable=True),
        sa.Column("spent_points", sa.Integer(), nullable=False),
        sa.Column("spent_coupons", sa.Integer(), nullable=False),
        sa.Column("seed", sa.String(64), nullable=True),
        sa.Column("seed_hash", sa.String(64), nullable=True),
        sa.Column("created_by", ID, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("launched_at", TS, nullable=True),
        sa.Column("ended_at", TS, nullable=True),
        sa.Column("settled_at", TS, nullable=True),
        sa.Column("cancelled_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_campaigns"),
    )
    op.create_index("ix_campaigns_community_id", "campaigns", ["community_id"])
    op.create_index("ix_campaigns_status", "campaigns", ["status"])
    op.create_index("ix_campaigns_due", "campaigns", ["status", "starts_at", "ends_at"])

    op.create_table(
        "participants",
        sa.Column("campaign_id", ID, nullable=False),
        sa.Column("member_id", ID, nullable=False),
        sa.Column("joined_at", TS, nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("streak", sa.Integer(), nullable=False),
        sa.Column("best_streak", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("last_day", sa.Date(), nullable=True),
        sa.Column("makeups_used", sa.Integer(), nullable=False),
        sa.Column("completed_at", TS, nullable=True),
        sa.Column("group_id", ID, nullable=True),
        sa.Column("answers", sa.JSON(), nullable=True),
        sa.Column("selected_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("campaign_id", "member_id", name="pk_participants"),
    )
    op.create_index("ix_participants_rank", "participants", ["campaign_id", "score"])
    op.create_index("ix_participants_group_id", "participants", ["group_id"])

    op.create_table(
        "buy_groups",
        sa.Column("id", ID, nullable=False),
        sa.Column("campaign_id", ID, nullable=False),
        sa.Column("leader_id", ID, nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("closed_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_buy_groups"),
    )
    op.create_index("ix_buy_groups_campaign_id", "buy_groups", ["campaign_id"])

    op.create_table(
        "checkins",
        sa.Column("campaign_id", ID, nullable=False),
        sa.Column("member_id", ID, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("photo_url", sa.String(500), nullable=True),
        sa.Column("makeup", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", "member_id", "day", name="pk_checkins"),
    )

    op.create_table(
        "grants",
        sa.Column("id", ID, nullable=False),
        sa.Column("campaign_id", ID, nullable=False),
        sa.Column("member_id", ID, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("points", sa.Integer(), nullable=True),
        sa.Column("coupon_template_id", ID, nullable=True),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("granted_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_grants"),
    )
    op.create_index("ix_grants_campaign_id", "grants", ["campaign_id"])
    op.create_index("ix_grants_member_id", "grants", ["member_id"])

    op.create_table(
        "referrals",
        sa.Column("campaign_id", ID, nullable=False),
        sa.Column("invitee_id", ID, nullable=False),
        sa.Column("referrer_id", ID, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("referred_at", TS, nullable=False),
        sa.Column("activate_by", TS, nullable=False),
        sa.Column("activated_at", TS, nullable=True),
        sa.Column("hold_until", TS, nullable=True),
        sa.Column("grant_id", ID, nullable=True),
        sa.PrimaryKeyConstraint("campaign_id", "invitee_id", name="pk_referrals"),
    )
    op.create_index("ix_referrals_referrer_id", "referrals", ["referrer_id"])

    op.create_table(
        "entries",
        sa.Column("id", ID, nullable=False),
        sa.Column("campaign_id", ID, nullable=False),
        sa.Column("member_id", ID, nullable=False),
        sa.Column("post_id", ID, nullable=True),
        sa.Column("votes", sa.Integer(), nullable=False),
        sa.Column("judge_score", sa.Float(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_entries"),
    )
    op.create_index("ix_entries_campaign_id", "entries", ["campaign_id"])
    op.create_index("ix_entries_member_id", "entries", ["member_id"])
    op.create_index("uq_entries_campaign_post", "entries", ["campaign_id", "post_id"], unique=True)

    op.create_table(
        "votes",
        sa.Column("campaign_id", ID, nullable=False),
        sa.Column("voter_id", ID, nullable=False),
        sa.Column("entry_id", ID, nullable=False),
        sa.Column("entry_author_id", ID, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", "voter_id", "entry_id", name="pk_votes"),
    )
    op.create_index("ix_votes_quota", "votes", ["campaign_id", "voter_id", "day"])

    op.create_table(
        "vote_flags",
        sa.Column("campaign_id", ID, nullable=False),
        sa.Column("member_a", ID, nullable=False),
        sa.Column("member_b", ID, nullable=False),
        sa.Column("flagged_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", "member_a", "member_b", name="pk_vote_flags"),
    )

    op.create_table(
        "draws",
        sa.Column("campaign_id", ID, nullable=False),
        sa.Column("seed", sa.String(64), nullable=False),
        sa.Column("seed_hash", sa.String(64), nullable=False),
        sa.Column("entry_ids", sa.JSON(), nullable=False),
        sa.Column("winner_entry_ids", sa.JSON(), nullable=False),
        sa.Column("drawn_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", name="pk_draws"),
    )

    op.create_table(
        "community_replicas",
        sa.Column("id", ID, nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_community_replicas"),
    )
    op.create_table(
        "membership_replicas",
        sa.Column("community_id", ID, nullable=False),
        sa.Column("member_id", ID, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("community_id", "member_id", name="pk_membership_replicas"),
    )
    op.create_table(
        "post_replicas",
        sa.Column("id", ID, nullable=False),
        sa.Column("community_id", ID, nullable=False),
        sa.Column("author_id", ID, nullable=False),
        sa.Column("published_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_post_replicas"),
    )


def downgrade() -> None:
    for table in (
        "post_replicas",
        "membership_replicas",
        "community_replicas",
        "draws",
        "vote_flags",
        "votes",
        "entries",
        "referrals",
        "grants",
        "checkins",
        "buy_groups",
        "participants",
        "campaigns",
    ):
        op.drop_table(table)
