"""Members domain: full profile with encrypted contacts, communities, segments, referrals.

Contacts move from plaintext columns to ciphertext plus a keyed lookup hash;
plaintext contacts of members registered before this revision are dropped
(they existed only in local development databases).

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


def upgrade() -> None:
    with op.batch_alter_table("members") as batch:
        batch.drop_constraint("uq_members_email", type_="unique")
        batch.drop_constraint("uq_members_phone", type_="unique")
        batch.drop_column("email")
        batch.drop_column("phone")
        batch.drop_column("region")
        batch.add_column(sa.Column("avatar_url", sa.String(500), nullable=True))
        batch.add_column(sa.Column("gender", sa.String(16), nullable=True))
        batch.add_column(sa.Column("birth_year", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("country", sa.String(2), nullable=True))
        batch.add_column(sa.Column("province", sa.String(8), nullable=True))
        batch.add_column(sa.Column("city", sa.String(64), nullable=True))
        batch.add_column(sa.Column("email_cipher", sa.Text(), nullable=True))
        batch.add_column(sa.Column("email_lookup", sa.String(64), nullable=True))
        batch.add_column(sa.Column("phone_cipher", sa.Text(), nullable=True))
        batch.add_column(sa.Column("phone_lookup", sa.String(64), nullable=True))
        batch.add_column(sa.Column("password_hash", sa.String(200), nullable=True))
        batch.add_column(
            sa.Column("marketing_consent", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("consent_at", TS, nullable=True))
        batch.add_column(sa.Column("consent_source", sa.String(32), nullable=True))
        batch.add_column(sa.Column("invite_code", sa.String(16), nullable=True))
        batch.add_column(sa.Column("referrer_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("referred_at", TS, nullable=True))
        batch.add_column(sa.Column("referral_expires_at", TS, nullable=True))
        batch.add_column(sa.Column("referral_activated_at", TS, nullable=True))
        batch.add_column(sa.Column("tier", sa.String(32), nullable=True))
        batch.add_column(sa.Column("tier_name", sa.String(64), nullable=True))
        batch.add_column(
            sa.Column("points_balance", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("last_active_at", TS, nullable=True))
        batch.add_column(sa.Column("updated_at", TS, nullable=True))
        batch.add_column(sa.Column("erased_at", TS, nullable=True))
        batch.create_unique_constraint("uq_members_email_lookup", ["email_lookup"])
        batch.create_unique_constraint("uq_members_phone_lookup", ["phone_lookup"])
        batch.create_unique_constraint("uq_members_invite_code", ["invite_code"])
        batch.create_foreign_key(
            "fk_members_referrer_id_members", "members", ["referrer_id"], ["id"]
        )
    op.execute("UPDATE members SET updated_at = created_at WHERE updated_at IS NULL")
    with op.batch_alter_table("members") as batch:
        batch.alter_column("updated_at", existing_type=TS, nullable=False)
        batch.alter_column("marketing_consent", server_default=None)
        batch.alter_column("points_balance", server_default=None)
    for column in ("gender", "birth_year", "channel", "referrer_id", "tier", "points_balance"):
        op.create_index(f"ix_members_{column}", "members", [column])
    op.create_index("ix_members_last_active_at", "members", ["last_active_at"])
    op.create_index("ix_members_region", "members", ["country", "province", "city"])

    op.create_table(
        "member_interests",
        sa.Column("member_id", sa.String(36), nullable=False),
        sa.Column("interest", sa.String(32), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
            name="fk_member_interests_member_id_members",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("member_id", "interest", name="pk_member_interests"),
    )
    op.create_index("ix_member_interests_interest", "member_interests", ["interest"])

    op.create_table(
        "referral_days",
        sa.Column("referrer_id", sa.String(36), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["referrer_id"], ["members.id"], name="fk_referral_days_referrer_id_members"
        ),
        sa.PrimaryKeyConstraint("referrer_id", "day", name="pk_referral_days"),
    )

    op.create_table(
        "communities",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("logo_url", sa.String(500), nullable=True),
        sa.Column("theme", sa.String(32), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("rules", sa.Text(), nullable=False),
        sa.Column("visibility", sa.String(16), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("owner_id", sa.String(36), nullable=False),
        sa.Column("invite_code", sa.String(16), nullable=False),
        sa.Column("member_count", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["members.id"], name="fk_communities_owner_id_members"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_communities"),
        sa.UniqueConstraint("name", name="uq_communities_name"),
        sa.UniqueConstraint("invite_code", name="uq_communities_invite_code"),
    )
    op.create_index("ix_communities_owner_id", "communities", ["owner_id"])
    op.create_index("ix_communities_created_at", "communities", ["created_at"])

    op.create_table(
        "community_members",
        sa.Column("community_id", sa.String(36), nullable=False),
        sa.Column("member_id", sa.String(36), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("joined_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["community_id"],
            ["communities.id"],
            name="fk_community_members_community_id_communities",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name="fk_community_members_member_id_members"
        ),
        sa.PrimaryKeyConstraint("community_id", "member_id", name="pk_community_members"),
    )
    op.create_index("ix_community_members_member_id", "community_members", ["member_id"])

    op.create_table(
        "segments",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_segments"),
        sa.UniqueConstraint("name", name="uq_segments_name"),
    )


def downgrade() -> None:
    op.drop_table("segments")
    op.drop_table("community_members")
    op.drop_table("communities")
    op.drop_table("referral_days")
    op.drop_table("member_interests")
    for index in (
        "ix_members_region",
        "ix_members_last_active_at",
        *(f"ix_members_{c}" for c in ("gender", "birth_year", "channel", "referrer_id", "tier")),
        "ix_members_points_balance",
    ):
        op.drop_index(index, table_name="members")
    with op.batch_alter_table("members") as batch:
        batch.drop_constraint("fk_members_referrer_id_members", type_="foreignkey")
        for name in ("email_lookup", "phone_lookup", "invite_code"):
            batch.drop_constraint(f"uq_members_{name}", type_="unique")
        for column in (
            "avatar_url", "gender", "birth_year", "country", "province", "city", "email_cipher",
            "email_lookup", "phone_cipher", "phone_lookup", "password_hash", "marketing_consent",
            "consent_at", "consent_source", "invite_code", "referrer_id", "referred_at",
            "referral_expires_at", "referral_activated_at", "tier", "tier_name", "points_balance",
            "last_active_at", "updated_at", "erased_at",
        ):  # fmt: skip
            batch.drop_column(column)
        batch.add_column(sa.Column("region", sa.String(120), nullable=True))
        batch.add_column(sa.Column("email", sa.String(254), nullable=True))
        batch.add_column(sa.Column("phone", sa.String(32), nullable=True))
        batch.create_unique_constraint("uq_members_email", ["email"])
        batch.create_unique_constraint("uq_members_phone", ["phone"])
