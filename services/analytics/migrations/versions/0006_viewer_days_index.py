"""A member's viewer-days in order: ingest finds the nearest ones around a new viewer-day.

Partial (``post.viewed`` rows only), so the other step rows pay nothing for it.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

VIEWED = sa.text("event_type = 'post.viewed'")


def upgrade() -> None:
    op.create_index(
        "ix_member_event_days_viewer",
        "member_event_days",
        ["scope", "member_id", "day"],
        postgresql_where=VIEWED,
        sqlite_where=VIEWED,
    )


def downgrade() -> None:
    op.drop_index("ix_member_event_days_viewer", "member_event_days")
