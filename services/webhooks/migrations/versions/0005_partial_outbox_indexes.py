"""Platform tables version 2: the outbox's pending index holds pending rows only.

Revision ID: 0005
Revises: 0004
"""

from shared.migrations import partial_outbox_indexes, whole_outbox_indexes

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    partial_outbox_indexes()


def downgrade() -> None:
    whole_outbox_indexes()
