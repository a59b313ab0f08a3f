"""Alembic per service, applied at start by every replica."""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, MetaData, inspect

from shared.db import Database
from shared.migrations import upgrade
from tests.conftest import Databases

SERVICES = Path(__file__).parents[2] / "services"


async def table_names(db: Database) -> set[str]:
    async with db.engine.connect() as conn:
        return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))


async def test_every_service_migrates_to_head_with_the_platform_tables(
    databases: Databases,
) -> None:
    for service in sorted(p.name for p in SERVICES.iterdir() if (p / "migrations").is_dir()):
        db = Database(await databases.new(service))
        await upgrade(db, SERVICES / service / "migrations")
        await upgrade(db, SERVICES / service / "migrations")  # a restart is a no-op
        assert {"outbox", "inbox", "idempotency_keys", "alembic_version"} <= await table_names(db)
        await db.dispose()


async def test_replicas_starting_together_do_not_race_the_migration(
    pg_databases: Databases,
) -> None:
    url = await pg_databases.new("members")
    replicas = [Database(url) for _ in range(3)]
    migrations = SERVICES / "members" / "migrations"
    # Without the lock these deadlock in PostgreSQL's DDL locks; fail instead of hanging.
    await asyncio.wait_for(asyncio.gather(*(upgrade(db, migrations) for db in replicas)), 60)
    assert "members" in await table_names(replicas[0])
    for db in replicas:
        await db.dispose()


PLATFORM_TABLES = frozenset({"outbox", "inbox", "idempotency_keys", "alembic_version"})


def _model_metadata(service: str) -> MetaData:
    models = importlib.import_module(f"services.{service}.models")
    metadata: MetaData = models.Base.metadata
    return metadata


async def test_every_service_migration_matches_its_models(databases: Databases) -> None:
    """Models and migrations cannot drift: autogenerate finds nothing left to do."""
    for service in sorted(p.name for p in SERVICES.iterdir() if (p / "models.py").is_file()):
        db = Database(await databases.new(service))
        await upgrade(db, SERVICES / service / "migrations")
        metadata = _model_metadata(service)

        def diff(sync: Connection, metadata: MetaData = metadata) -> list[Any]:
            context = MigrationContext.configure(
                sync,
                opts={
                    "compare_type": True,
                    "include_name": lambda name, kind, _parent: (
                        kind != "table" or name not in PLATFORM_TABLES
                    ),
                },
            )
            return list(compare_metadata(context, metadata))

        async with db.engine.connect() as conn:
            found = await conn.run_sync(diff)
        await db.dispose()
        assert found == [], f"{service}: migrations and models differ: {found}"
