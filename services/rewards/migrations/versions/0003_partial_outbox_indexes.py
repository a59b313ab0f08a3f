"""Platform tables version 2: the outbox's pending index holds pending rows only.

Revision ID: 0003
Revises: 0002
"""

from shared.migrations import partial_outbox_indexes, whole_outbox_indexes

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    partial_outbox_indexes()


def downgrade() -> None:
    whole_outbox_indexes()
