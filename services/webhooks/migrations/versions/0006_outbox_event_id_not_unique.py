"""Platform tables version 3: the outbox's event id has no unique index.

Revision ID: 0006
Revises: 0005
"""

from shared.migrations import outbox_event_id_not_unique, outbox_event_id_unique

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    outbox_event_id_not_unique()


def downgrade() -> None:
    outbox_event_id_unique()
