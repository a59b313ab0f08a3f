"""Writes that later events of the same batch read at once: memberships, communities, erasure."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import Table, delete, func, literal, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics.models import (
    ERASED_PREFIX,
    ActivityGap,
    CampaignMemberStep,
    CampaignTarget,
    Community,
    DailyCounter,
    DailyMemberGrowth,
    ErasedMember,
    Freshness,
    HourlyActivity,
    MemberActivityDay,
    MemberEventDay,
    MemberScoreDay,
    PostStats,
    PostViewer,
    RawEvent,
    Rebuild,
    ScopeMember,
    SegmentMember,
    StaffMember,
)
from services.analytics.raw import scrub
from shared.db import conflict_insert, utcnow

# Tables whose rows name a member; erasure re-keys them to a random surrogate.
MEMBER_KEYED = (
    MemberActivityDay,
    ScopeMember,
    MemberEventDay,
    MemberScoreDay,
    PostViewer,
    CampaignMemberStep,
)
# What a rebuild clears and refills from raw_events: everything derived only from events.
# Kept: erased_members (the real ids later events are checked against; the raw store no
# longer holds them), segment snapshots (fetched from members, not from events), the inbox.
DERIVED = (
    DailyMemberGrowth,
    DailyCounter,
    MemberActivityDay,
    ActivityGap,
    ScopeMember,
    MemberEventDay,
    HourlyActivity,
    MemberScoreDay,
    PostStats,
    PostViewer,
    CampaignMemberStep,
    Freshness,
    Community,
    StaffMember,
    CampaignTarget,
)
REKEY_PAGE = 1000


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
        """Remember a staff author, unless erased: a late post must not bring the id back."""
        erased = select(ErasedMember.member_id).where(ErasedMember.member_id == member_id)
        stmt = self._insert(StaffMember).from_select(
            ["member_id"], select(literal(member_id)).where(~erased.exists())
        )
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
        await RawEventRepository(self.session).rekey(member_id, surrogate)
        await self.forget_staff(member_id)
        # A cached segment snapshot must not keep the id either.
        await self.session.execute(
            delete(SegmentMember).where(SegmentMember.member_id == member_id)
        )
        return True

    async def forget_staff(self, member_id: str) -> None:
        await self.session.execute(delete(StaffMember).where(StaffMember.member_id == member_id))

    async def clear_derived(self) -> None:
        for model in DERIVED:
            await self.session.execute(delete(model))


class RawEventRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def rekey(self, member_id: str, key: str) -> None:
        """Replace the member's id by ``key`` in every stored event naming them."""
        table = _table(RawEvent)
        columns = (table.c.event_id, table.c.type, table.c.subject, table.c.data)
        naming = or_(table.c.member_id == member_id, table.c.related_id == member_id)
        while True:  # a rewritten row no longer names the member: page until none is left
            rows = (
                await self.session.execute(
                    select(*columns, table.c.member_id, table.c.related_id)
                    .where(naming)
                    .limit(REKEY_PAGE)
                )
            ).mappings()
            scrubbed = [scrub(dict(row), {member_id: key}) for row in rows]
            if not scrubbed:
                return
            await self.session.execute(update(RawEvent), scrubbed)

    async def count(self) -> int:
        return int(await self.session.scalar(select(func.count()).select_from(RawEvent)) or 0)

    async def page(self, after: tuple[datetime, str] | None, limit: int) -> list[RawEvent]:
        """The next stored events in event-time order (ties by id), after ``after``."""
        query = select(RawEvent).order_by(RawEvent.time, RawEvent.event_id).limit(limit)
        if after is not None:
            query = query.where(tuple_(RawEvent.time, RawEvent.event_id) > after)
        return list(await self.session.scalars(query))

    async def events_applied(self) -> int:
        """How many events the rollups say they hold (their freshness row)."""
        return int(await self.session.scalar(select(Freshness.events_applied)) or 0)


class RebuildRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(self, rebuild: Rebuild) -> Rebuild:
        self.session.add(rebuild)
        await self.session.flush()
        return rebuild

    async def get(self, rebuild_id: str) -> Rebuild | None:
        return await self.session.get(Rebuild, rebuild_id)

    async def page(self, after: tuple[datetime, str] | None, limit: int) -> list[Rebuild]:
        """Newest first."""
        query = select(Rebuild).order_by(Rebuild.started_at.desc(), Rebuild.id.desc())
        if after is not None:
            query = query.where(tuple_(Rebuild.started_at, Rebuild.id) < after)
        return list(await self.session.scalars(query.limit(limit)))

    async def progress(self, rebuild_id: str, done: int) -> None:
        await self.session.execute(
            update(Rebuild).where(Rebuild.id == rebuild_id).values(events_done=done)
        )

    async def finish(self, rebuild_id: str, state: str, error: str | None = None) -> None:
        await self.session.execute(
            update(Rebuild)
            .where(Rebuild.id == rebuild_id, Rebuild.state == "running")
            .values(state=state, error=error, finished_at=utcnow())
        )

    async def fail_running(self, error: str) -> None:
        await self.session.execute(
            update(Rebuild)
            .where(Rebuild.state == "running")
            .values(state="failed", error=error, finished_at=utcnow())
        )
