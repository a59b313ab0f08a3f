"""Writes that later events of the same batch read at once: memberships, communities, erasure."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics.models import (
    CampaignMemberStep,
    CampaignTarget,
    Community,
    DailyMemberGrowth,
    ErasedMember,
    MemberActivityDay,
    MemberEventDay,
    MemberScoreDay,
    PostStats,
    PostViewer,
    ScopeMember,
    SegmentMember,
    StaffMember,
)
from shared.db import conflict_insert

ERASED_PREFIX = "erased-"

# Tables whose rows name a member; erasure re-keys them to a random surrogate.
MEMBER_KEYED = (
    MemberActivityDay,
    ScopeMember,
    MemberEventDay,
    MemberScoreDay,
    PostViewer,
    CampaignMemberStep,
)


def _table(model: Any) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


class GrowthRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def count_registration(self, day: date) -> None:
        table = _table(DailyMemberGrowth)
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


class RollupRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def _insert(self, model: Any) -> Any:
        return conflict_insert(self.session, _table(model))

    async def join_scope(self, scope: str, member_id: str, day: date, channel: str = "") -> bool:
        """True when the member is new to the scope (a rejoin after leaving is not new)."""
        stmt = (
            self._insert(ScopeMember)
            .values(scope=scope, member_id=member_id, joined_on=day, channel=channel)
            .on_conflict_do_nothing(index_elements=["scope", "member_id"])
            .returning(_table(ScopeMember).c.member_id)
        )
        if (await self.session.execute(stmt)).first() is not None:
            return True
        await self.session.execute(
            update(ScopeMember)
            .where(ScopeMember.scope == scope, ScopeMember.member_id == member_id)
            .values(left_on=None)
        )
        return False

    async def leave_scope(self, scope: str, member_id: str, day: date) -> bool:
        result = await self.session.execute(
            update(ScopeMember)
            .where(
                ScopeMember.scope == scope,
                ScopeMember.member_id == member_id,
                ScopeMember.left_on.is_(None),
            )
            .values(left_on=day)
        )
        return bool(getattr(result, "rowcount", 0))

    async def scopes_of(self, member_id: str) -> list[str]:
        rows = await self.session.scalars(
            select(ScopeMember.scope).where(
                ScopeMember.member_id == member_id, ScopeMember.left_on.is_(None)
            )
        )
        return list(rows)

    async def save_community(self, community_id: str, timezone: str, created_at: datetime) -> None:
        stmt = self._insert(Community).values(
            community_id=community_id, timezone=timezone, created_at=created_at
        )
        await self.session.execute(
            stmt.on_conflict_do_update(index_elements=["community_id"], set_={"timezone": timezone})
        )

    async def save_campaign_target(
        self,
        campaign_id: str,
        community_id: str,
        starts_at: datetime,
        ends_at: datetime,
        segment_id: str | None = None,
        *,
        with_segment: bool,
    ) -> None:
        """Created and launched both carry the window; only created names the segment."""
        values: dict[str, Any] = {
            "community_id": community_id,
            "starts_at": starts_at,
            "ends_at": ends_at,
        }
        if with_segment:
            values["segment_id"] = segment_id
        stmt = self._insert(CampaignTarget).values(
            campaign_id=campaign_id, **({"segment_id": segment_id} | values)
        )
        await self.session.execute(
            stmt.on_conflict_do_update(index_elements=["campaign_id"], set_=values)
        )

    async def mark_staff(self, member_id: str) -> None:
        stmt = self._insert(StaffMember).values(member_id=member_id)
        await self.session.execute(stmt.on_conflict_do_nothing(index_elements=["member_id"]))

    async def erase(self, member_id: str, at: datetime) -> bool:
        """Cut the link between the member and their rows; counts stay. False if done before."""
        stmt = (
            self._insert(ErasedMember)
            .values(member_id=member_id, erased_at=at)
            .on_conflict_do_nothing(index_elements=["member_id"])
            .returning(_table(ErasedMember).c.member_id)
        )
        if (await self.session.execute(stmt)).first() is None:
            return False
        # A fresh random surrogate: distinct counts stay right, nothing links back to the id.
        surrogate = ERASED_PREFIX + uuid.uuid4().hex[: 36 - len(ERASED_PREFIX)]
        for model in MEMBER_KEYED:
            await self.session.execute(
                update(model).where(model.member_id == member_id).values(member_id=surrogate)
            )
        await self.session.execute(
            update(PostStats).where(PostStats.author_id == member_id).values(author_id=surrogate)
        )
        await self.session.execute(delete(StaffMember).where(StaffMember.member_id == member_id))
        # A cached segment snapshot must not keep the id either.
        await self.session.execute(
            delete(SegmentMember).where(SegmentMember.member_id == member_id)
        )
        return True
