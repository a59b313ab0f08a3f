"""API key rotation: the replaced secret stays valid for an overlap period.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("previous_key_hash", sa.String(64), nullable=True))
    op.add_column(
        "api_keys", sa.Column("previous_expires_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("api_keys", sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_api_keys_previous_key_hash", "api_keys", ["previous_key_hash"])


def downgrade() -> None:
    op.drop_index("ix_api_keys_previous_key_hash", table_name="api_keys")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("rotated_at")
        batch.drop_column("previous_expires_at")
        batch.drop_column("previous_key_hash")
