"""Endpoint signing secrets sealed at rest (AES-GCM), existing rows included.

``secret``/``previous_secret`` (plaintext) become ``secret_ciphertext``/
``previous_secret_ciphertext``. The sealing key comes from
``WEBHOOKS_ENDPOINT_SECRET_KEY``, read from the environment as the service reads
it (a production profile without it refuses to start, and so does this migration).

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

from services.webhooks.settings import WebhooksSettings
from services.webhooks.signing import secret_sealer
from shared.crypto import Sealer

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLE = "webhook_endpoints"


def _sealer() -> Sealer:
    return secret_sealer(WebhooksSettings().endpoint_secret_key.get_secret_value())


def _endpoints(*columns: str) -> sa.TableClause:
    return sa.table(TABLE, sa.column("id"), *(sa.column(c) for c in columns))


def _convert(
    source: tuple[str, str], target: tuple[str, str], change: Callable[[str], str]
) -> None:
    """Write ``change(value)`` of the source columns into the target columns, row by row."""
    endpoints = _endpoints(*source, *target)
    bind = op.get_bind()
    rows = bind.execute(sa.select(endpoints.c.id, *(endpoints.c[c] for c in source))).all()
    for endpoint_id, current, previous in rows:
        values = {
            target[0]: change(current),
            target[1]: change(previous) if previous else None,
        }
        bind.execute(endpoints.update().where(endpoints.c.id == endpoint_id).values(**values))


def upgrade() -> None:
    with op.batch_alter_table(TABLE) as batch:
        batch.add_column(sa.Column("secret_ciphertext", sa.String(200), nullable=True))
        batch.add_column(sa.Column("previous_secret_ciphertext", sa.String(200), nullable=True))
    _convert(
        ("secret", "previous_secret"),
        ("secret_ciphertext", "previous_secret_ciphertext"),
        _sealer().seal,
    )
    with op.batch_alter_table(TABLE) as batch:
        batch.alter_column("secret_ciphertext", existing_type=sa.String(200), nullable=False)
        batch.drop_column("secret")
        batch.drop_column("previous_secret")


def downgrade() -> None:
    with op.batch_alter_table(TABLE) as batch:
        batch.add_column(sa.Column("secret", sa.String(100), nullable=True))
        batch.add_column(sa.Column("previous_secret", sa.String(100), nullable=True))
    _convert(
        ("secret_ciphertext", "previous_secret_ciphertext"),
        ("secret", "previous_secret"),
        _sealer().open,
    )
    with op.batch_alter_table(TABLE) as batch:
        batch.alter_column("secret", existing_type=sa.String(100), nullable=False)
        batch.drop_column("secret_ciphertext")
        batch.drop_column("previous_secret_ciphertext")
