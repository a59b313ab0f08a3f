"""Platform tables version 2: the outbox's pending index holds pending rows only.

Revision ID: 0004
Revises: 0003
"""

from shared.migrations import partial_outbox_indexes, whole_outbox_indexes

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    partial_outbox_indexes()


def downgrade() -> None:
    whole_outbox_indexes()
