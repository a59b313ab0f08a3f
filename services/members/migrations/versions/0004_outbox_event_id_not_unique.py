"""Platform tables version 3: the outbox's event id has no unique index.

Revision ID: 0004
Revises: 0003
"""

from shared.migrations import outbox_event_id_not_unique, outbox_event_id_unique

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    outbox_event_id_not_unique()


def downgrade() -> None:
    outbox_event_id_unique()
