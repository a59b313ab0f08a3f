"""Rewards: ledger, lots, earning rules, tiers, coupons, catalogue, redemptions.

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
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("member_id", sa.String(36), nullable=False),
        sa.Column("available", sa.Integer(), nullable=False),
        sa.Column("pending", sa.Integer(), nullable=False),
        sa.Column("lifetime", sa.Integer(), nullable=False),
        sa.Column("tier_code", sa.String(40), nullable=True),
        sa.Column("tier_since", TS, nullable=True),
        sa.Column("tier_review_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("member_id", name="pk_accounts"),
        sa.CheckConstraint("available >= 0", name="ck_accounts_available_not_negative"),
        sa.CheckConstraint("pending >= 0", name="ck_accounts_pending_not_negative"),
    )
    op.create_index("ix_accounts_tier_review_at", "accounts", ["tier_review_at"])

    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("member_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("reason_code", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("available_delta", sa.Integer(), nullable=False),
        sa.Column("pending_delta", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(300), nullable=False),
        sa.Column("rule_id", sa.String(36), nullable=True),
        sa.Column("operator_id", sa.String(36), nullable=True),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_entries"),
        sa.UniqueConstraint("source", name="uq_ledger_entries_source"),
    )
    op.create_index(
        "ix_ledger_entries_member_created", "ledger_entries", ["member_id", "created_at", "id"]
    )
    op.create_index(
        "ix_ledger_entries_rule_usage", "ledger_entries", ["member_id", "rule_id", "occurred_at"]
    )

    op.create_table(
        "ledger_lines",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("entry_id", sa.String(36), nullable=False),
        sa.Column("member_id", sa.String(36), nullable=True),
        sa.Column("account", sa.String(32), nullable=False),
        sa.Column("lot_id", sa.String(36), nullable=True),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_lines"),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["ledger_entries.id"], name="fk_ledger_lines_entry_id_ledger_entries"
        ),
    )
    op.create_index("ix_ledger_lines_entry_id", "ledger_lines", ["entry_id"])
    op.create_index("ix_ledger_lines_member_account", "ledger_lines", ["member_id", "account"])

    op.create_table(
        "lots",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("member_id", sa.String(36), nullable=False),
        sa.Column("entry_id", sa.String(36), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("remaining", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("available_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=True),
        sa.Column("reminded_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_lots"),
        sa.CheckConstraint("remaining >= 0", name="ck_lots_remaining_not_negative"),
    )
    op.create_index("ix_lots_member_status_expires", "lots", ["member_id", "status", "expires_at"])
    op.create_index("ix_lots_status_expires", "lots", ["status", "expires_at"])
    op.create_index("ix_lots_status_available_at", "lots", ["status", "available_at"])

    op.create_table(
        "earning_rules",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("daily_cap", sa.Integer(), nullable=True),
        sa.Column("weekly_cap", sa.Integer(), nullable=True),
        sa.Column("community_id", sa.String(36), nullable=True),
        sa.Column("starts_at", TS, nullable=True),
        sa.Column("ends_at", TS, nullable=True),
        sa.Column("tier_multipliers", sa.JSON(), nullable=False),
        sa.Column("hold_h", sa.Float(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_earning_rules"),
    )
    op.create_index("ix_earning_rules_event_type", "earning_rules", ["event_type"])

    op.create_table(
        "tiers",
        sa.Column("code", sa.String(40), nullable=False),
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("code", name="pk_tiers"),
        sa.UniqueConstraint("threshold", name="uq_tiers_threshold"),
    )

    op.create_table(
        "coupon_templates",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("value", sa.Integer(), nullable=True),
        sa.Column("gift", sa.String(200), nullable=True),
        sa.Column("valid_from", TS, nullable=True),
        sa.Column("valid_until", TS, nullable=True),
        sa.Column("total_stock", sa.Integer(), nullable=True),
        sa.Column("remaining_stock", sa.Integer(), nullable=True),
        sa.Column("per_member_limit", sa.Integer(), nullable=True),
        sa.Column("segment_id", sa.String(36), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_coupon_templates"),
        sa.CheckConstraint("remaining_stock >= 0", name="ck_coupon_templates_stock_not_negative"),
    )

    op.create_table(
        "coupons",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("template_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("member_id", sa.String(36), nullable=True),
        sa.Column("campaign_id", sa.String(36), nullable=True),
        sa.Column("source", sa.String(300), nullable=True),
        sa.Column("order_ref", sa.String(120), nullable=True),
        sa.Column("issued_at", TS, nullable=True),
        sa.Column("redeemed_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_coupons"),
        sa.UniqueConstraint("code", name="uq_coupons_code"),
        sa.UniqueConstraint("source", name="uq_coupons_source"),
        sa.ForeignKeyConstraint(
            ["template_id"], ["coupon_templates.id"], name="fk_coupons_template_id_coupon_templates"
        ),
    )
    op.create_index("ix_coupons_template_status", "coupons", ["template_id", "status"])
    op.create_index("ix_coupons_member_template", "coupons", ["member_id", "template_id"])

    op.create_table(
        "catalog_items",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("description", sa.String(2000), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("points_price", sa.Integer(), nullable=False),
        sa.Column("stock", sa.Integer(), nullable=True),
        sa.Column("coupon_template_id", sa.String(36), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_catalog_items"),
        sa.CheckConstraint("stock >= 0", name="ck_catalog_items_stock_not_negative"),
    )

    op.create_table(
        "redemptions",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("member_id", sa.String(36), nullable=False),
        sa.Column("item_id", sa.String(36), nullable=False),
        sa.Column("item_kind", sa.String(16), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("entry_id", sa.String(36), nullable=True),
        sa.Column("coupon_code", sa.String(32), nullable=True),
        sa.Column("source", sa.String(300), nullable=False),
        sa.Column("shipping_address", sa.Text(), nullable=True),
        sa.Column("note", sa.String(500), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_redemptions"),
        sa.UniqueConstraint("source", name="uq_redemptions_source"),
        sa.ForeignKeyConstraint(
            ["item_id"], ["catalog_items.id"], name="fk_redemptions_item_id_catalog_items"
        ),
    )
    op.create_index(
        "ix_redemptions_member_created", "redemptions", ["member_id", "created_at", "id"]
    )


def downgrade() -> None:
    for table in (
        "redemptions",
        "catalog_items",
        "coupons",
        "coupon_templates",
        "tiers",
        "earning_rules",
        "lots",
        "ledger_lines",
        "ledger_entries",
        "accounts",
    ):
        op.drop_table(table)
