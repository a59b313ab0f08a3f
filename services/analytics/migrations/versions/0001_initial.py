"""Platform tables and member growth rollup.

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
        "daily_member_growth",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("registered", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", name="pk_daily_member_growth"),
    )


def downgrade() -> None:
    op.drop_table("daily_member_growth")
    drop_platform_tables()
