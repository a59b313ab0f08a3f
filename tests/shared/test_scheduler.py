"""Scheduled jobs: each due item is handled exactly once, even with replicas racing."""

from __future__ import annotations

import asyncio
import contextlib

from sqlalchemy import Boolean, Column, Integer, MetaData, Table, insert, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import Database
from shared.scheduler import ScheduledJob, claim, run_once
from tests.conftest import Databases

metadata = MetaData()
due = Table(
    "due_items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("done", Boolean, nullable=False, default=False),
)
handled = Table("handled_items", metadata, Column("item_id", Integer, primary_key=True))


async def handle_due(session: AsyncSession) -> int:
    ids = (await session.scalars(claim(select(due.c.id).where(~due.c.done).limit(50)))).all()
    count = 0
    for item_id in ids:
        taken = await session.execute(
            update(due).where(due.c.id == item_id, ~due.c.done).values(done=True)
        )
        if taken.rowcount == 1:  # type: ignore[attr-defined]
            # The primary key would refuse a second handling of the same item.
            await session.execute(insert(handled).values(item_id=item_id))
            count += 1
    return count


JOB = ScheduledJob("handle-due", interval_s=0.01, run=handle_due, batch_size=50)


async def test_replicas_racing_handle_every_due_item_exactly_once(databases: Databases) -> None:
    url = await databases.new("sched")
    replicas = [Database(url) for _ in range(2)]
    async with replicas[0].engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.execute(insert(due), [{"id": i, "done": False} for i in range(400)])

    async def replica(db: Database) -> None:
        while True:
            try:
                if await run_once(db, JOB) == 0:
                    return
            except sa_exc.OperationalError:  # SQLite: the other writer won; try again
                await asyncio.sleep(0.01)

    try:
        await asyncio.gather(*(replica(db) for db in replicas))
        async with replicas[0].session() as session:
            rows = (await session.scalars(select(handled.c.item_id))).all()
            left = (await session.scalars(select(due.c.id).where(~due.c.done))).all()
        assert sorted(rows) == list(range(400))
        assert left == []
    finally:
        for db in replicas:
            with contextlib.suppress(Exception):
                await db.dispose()
