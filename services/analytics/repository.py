from __future__ import annotations

from datetime import date

from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics.models import DailyMemberGrowth
from shared.db import conflict_insert


class GrowthRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def count_registration(self, day: date) -> None:
        table = DailyMemberGrowth.__table__
        assert isinstance(table, Table)
        stmt = conflict_insert(self.session, table).values(day=day, registered=1)
        stmt = stmt.on_conflict_do_update(
            index_elements=["day"], set_={"registered": table.c.registered + 1}
        )
        await self.session.execute(stmt)

    async def registered_between(self, start: date | None, end: date | None) -> int:
        query = select(func.coalesce(func.sum(DailyMemberGrowth.registered), 0))
        if start is not None:
            query = query.where(DailyMemberGrowth.day >= start)
        if end is not None:
            query = query.where(DailyMemberGrowth.day <= end)
        return int(await self.session.scalar(query) or 0)
