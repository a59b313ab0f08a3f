"""Alembic per service: one migrations folder each, applied at start or by ``community migrate``.

A service's ``migrations/env.py`` is two lines: import its metadata and call
``run_env``. Platform tables are created by ``create_platform_tables`` from the
service's first revision, so every service database carries them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa
from alembic import command, context, op
from alembic.config import Config
from sqlalchemy import Connection, MetaData
from sqlalchemy.ext.asyncio import create_async_engine

from shared.db import OUTBOX_PENDING, OUTBOX_SENT, Database, platform_metadata

MIGRATION_LOCK_KEY = 0x636F6D6D  # any constant; each service has its own database


def alembic_config(script_location: Path, url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def upgrade(db: Database, script_location: Path, revision: str = "head") -> None:
    """Bring the service database to ``revision`` on the service's own engine."""
    config = alembic_config(script_location, db.url)

    def _run(connection: Connection) -> None:
        if connection.dialect.name == "postgresql":
            # Replicas starting together queue here instead of racing the same DDL.
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with db.engine.begin() as conn:
        await conn.run_sync(_run)


def _configure_and_run(connection: Connection, metadata: MetaData) -> None:
    context.configure(
        connection=connection,
        target_metadata=[platform_metadata, metadata],
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_env(metadata: MetaData) -> None:
    """The body of every service's ``env.py``."""
    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection, metadata)
        return
    url = config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url is not set"

    async def _online() -> None:
        engine = create_async_engine(url)
        async with engine.begin() as conn:
            await conn.run_sync(_configure_and_run, metadata)
        await engine.dispose()

    asyncio.run(_online())


def create_platform_tables() -> None:
    """Platform tables, schema version 1. Called from each service's first revision."""
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "outbox",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("type", sa.String(200), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("event_id", name="uq_outbox_event_id"),
    )
    op.create_index("ix_outbox_pending", "outbox", ["sent_at", "id"])
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(100), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("type", sa.String(200), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id", name="pk_inbox"),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(400), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.LargeBinary(), nullable=True),
        sa.Column("response_headers", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("scope", name="pk_idempotency_keys"),
    )
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])


def partial_outbox_indexes() -> None:
    """Platform tables, schema version 2: the outbox's pending index holds pending rows
    only, and sent rows get their own for purging. Called from each service's revision
    that brings it to version 2."""
    op.drop_index("ix_outbox_pending", "outbox")
    op.create_index(
        "ix_outbox_pending",
        "outbox",
        ["id"],
        postgresql_where=OUTBOX_PENDING,
        sqlite_where=OUTBOX_PENDING,
    )
    op.create_index(
        "ix_outbox_sent_at",
        "outbox",
        ["sent_at"],
        postgresql_where=OUTBOX_SENT,
        sqlite_where=OUTBOX_SENT,
    )


def whole_outbox_indexes() -> None:
    """Back to platform tables version 1."""
    op.drop_index("ix_outbox_sent_at", "outbox")
    op.drop_index("ix_outbox_pending", "outbox")
    op.create_index("ix_outbox_pending", "outbox", ["sent_at", "id"])


def outbox_event_id_not_unique() -> None:
    """Platform tables, schema version 3: no unique index on the outbox's event id.

    The id is 122 random bits made once per row, nothing reads the outbox by it, and
    consumers dedupe by it anyway; the index cost a random B-tree write on every insert
    and, on PostgreSQL, on every mark (a non-HOT update writes every index again).
    """
    with op.batch_alter_table("outbox") as batch:  # SQLite: a rebuild, indexes kept
        batch.drop_constraint("uq_outbox_event_id", type_="unique")


def outbox_event_id_unique() -> None:
    """Back to platform tables version 2."""
    with op.batch_alter_table("outbox") as batch:
        batch.create_unique_constraint("uq_outbox_event_id", ["event_id"])


def drop_platform_tables() -> None:
    op.drop_table("idempotency_keys")
    op.drop_table("inbox")
    op.drop_table("outbox")
