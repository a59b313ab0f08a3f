"""Lottery entries priced in points or earned by check-ins, weighted by tickets.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("entries", sa.Column("tickets", sa.Integer(), nullable=False, server_default="1"))
    op.add_column(
        "entries", sa.Column("source", sa.String(16), nullable=False, server_default="free")
    )
    op.add_column(
        "entries",
        sa.Column("status", sa.String(16), nullable=False, server_default="confirmed"),
    )
    op.add_column("entries", sa.Column("points_spent", sa.Integer(), nullable=True))
    op.create_index("ix_entries_status", "entries", ["status"])
    op.add_column("draws", sa.Column("entry_tickets", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("draws", "entry_tickets")
    op.drop_index("ix_entries_status", table_name="entries")
    for column in ("points_spent", "status", "source", "tickets"):
        op.drop_column("entries", column)
