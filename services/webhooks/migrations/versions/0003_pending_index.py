"""An endpoint's due deliveries found through (endpoint_id, status, next_attempt_at).

With (status, next_attempt_at) and (endpoint_id, seq) the dispatcher's "what is due
for this endpoint" walked either every endpoint's pending backlog or every delivery
the endpoint ever had (succeeded ones included); its cost grew with the backlog and
the delivery log. One index answers both the claim and the fetch.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLE = "webhook_deliveries"


def upgrade() -> None:
    op.drop_index("ix_webhook_deliveries_endpoint_seq", table_name=TABLE)
    op.drop_index("ix_webhook_deliveries_due", table_name=TABLE)
    op.create_index(
        "ix_webhook_deliveries_endpoint_due", TABLE, ["endpoint_id", "status", "next_attempt_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_endpoint_due", table_name=TABLE)
    op.create_index("ix_webhook_deliveries_due", TABLE, ["status", "next_attempt_at"])
    op.create_index("ix_webhook_deliveries_endpoint_seq", TABLE, ["endpoint_id", "seq"])
