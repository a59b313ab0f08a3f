from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics.repository import GrowthRepository
from services.analytics.schemas import MemberGrowth, Overview
from shared.errors import Unprocessable


class InvalidPeriod(Unprocessable):
    code, title = "invalid-period", "Invalid period"


class AnalyticsService:
    async def record_registration(self, session: AsyncSession, registered_at: datetime) -> None:
        await GrowthRepository(session).count_registration(registered_at.date())

    async def overview(self, session: AsyncSession, start: date, end: date) -> Overview:
        if end < start:
            raise InvalidPeriod("`to` must not be before `from`")
        length = (end - start).days + 1
        repo = GrowthRepository(session)
        previous_end = start - timedelta(days=1)
        return Overview(
            period_from=start,
            period_to=end,
            members=MemberGrowth(
                total=await repo.registered_between(None, None),
                new_in_period=await repo.registered_between(start, end),
                new_in_previous_period=await repo.registered_between(
                    previous_end - timedelta(days=length - 1), previous_end
                ),
            ),
        )


analytics_service = AnalyticsService()
