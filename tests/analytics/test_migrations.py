"""The analytics migrations create exactly what the models describe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection

from services.analytics.models import Base
from shared.db import Database
from shared.migrations import upgrade
from tests.conftest import Databases

MIGRATIONS = Path(__file__).parents[2] / "services" / "analytics" / "migrations"
PLATFORM_TABLES = frozenset({"outbox", "inbox", "idempotency_keys", "alembic_version"})


async def test_analytics_migrations_match_the_models(databases: Databases) -> None:
    db = Database(await databases.new("analytics"))
    await upgrade(db, MIGRATIONS)

    def diff(sync: Connection) -> list[Any]:
        context = MigrationContext.configure(
            sync,
            opts={
                "compare_type": True,
                "include_name": lambda name, kind, _parent: (
                    kind != "table" or name not in PLATFORM_TABLES
                ),
            },
        )
        return list(compare_metadata(context, Base.metadata))

    async with db.engine.connect() as conn:
        found = await conn.run_sync(diff)
    await db.dispose()
    assert found == []
