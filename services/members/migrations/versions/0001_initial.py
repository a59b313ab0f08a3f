"""Platform tables and members.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from shared.migrations import create_platform_tables, drop_platform_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_platform_tables()
    op.create_table(
        "members",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("nickname", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("region", sa.String(120), nullable=True),
        sa.Column("email", sa.String(254), nullable=True),
        sa.Column("phone", sa.String(32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_members"),
        sa.UniqueConstraint("email", name="uq_members_email"),
        sa.UniqueConstraint("phone", name="uq_members_phone"),
    )
    op.create_index("ix_members_created_at", "members", ["created_at"])


def downgrade() -> None:
    op.drop_table("members")
    drop_platform_tables()
