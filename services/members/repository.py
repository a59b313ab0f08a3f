"""Every query of the members service."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, and_, bindparam, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, joinedload

from services.members.models import (
    Community,
    Member,
    MemberInterest,
    Membership,
    ReferralDay,
    Segment,
)
from shared.db import conflict_insert

LIVE = Member.erased_at.is_(None)
# Consumers update many members per statement through the table: an ORM UPDATE would
# evaluate its WHERE against the session's objects for every call, and none are loaded.
MEMBERS = cast(Table, Member.__table__)
SET_BALANCE = (
    update(MEMBERS)
    .where(MEMBERS.c.id == bindparam("member"), MEMBERS.c.erased_at.is_(None))
    .values(points_balance=bindparam("balance"))
)
STAMP_ACTIVITY = (
    update(MEMBERS)
    .where(
        MEMBERS.c.id == bindparam("member"),
        MEMBERS.c.erased_at.is_(None),
        or_(MEMBERS.c.last_active_at.is_(None), MEMBERS.c.last_active_at < bindparam("at")),
    )
    .values(last_active_at=bindparam("at"))
)


INTERESTS = cast(Table, MemberInterest.__table__)
# A member's columns and interests in one row: ``aggregate_strings`` is group_concat on SQLite
# and string_agg on PostgreSQL. The ORM's joined load of the same cost twice the CPU.
PROFILE = select(
    *MEMBERS.c,
    select(func.aggregate_strings(INTERESTS.c.interest, ","))
    .where(INTERESTS.c.member_id == MEMBERS.c.id)
    .scalar_subquery()
    .label("interest_list"),
).where(MEMBERS.c.id == bindparam("member"))


class MemberRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, member_id: str, *, for_update: bool = False) -> Member | None:
        if for_update:
            stmt = select(Member).where(Member.id == member_id).with_for_update()
            return (await self.session.scalars(stmt)).first()
        # One statement instead of the relationship's default selectin second query.
        return await self.session.get(Member, member_id, options=[joinedload(Member.interest_rows)])

    async def profile(self, member_id: str) -> dict[str, Any] | None:
        """The member's columns by name plus its sorted ``interests``, or None."""
        row = (await self.session.execute(PROFILE, {"member": member_id})).first()
        if row is None:
            return None
        fields = dict(row._mapping)
        listed = fields.pop("interest_list")
        fields["interests"] = sorted(listed.split(",")) if listed else []
        return fields

    async def by_lookup(self, lookup: str) -> Member | None:
        stmt = select(Member).where(
            or_(Member.email_lookup == lookup, Member.phone_lookup == lookup), LIVE
        )
        return (await self.session.scalars(stmt)).first()

    async def lookups_taken(self, lookups: Sequence[str], *, besides: str | None = None) -> bool:
        if not lookups:
            return False
        stmt = select(Member.id).where(
            or_(Member.email_lookup.in_(lookups), Member.phone_lookup.in_(lookups))
        )
        if besides is not None:
            stmt = stmt.where(Member.id != besides)
        return (await self.session.scalar(stmt.limit(1))) is not None

    async def by_invite_code(self, code: str) -> Member | None:
        stmt = select(Member).where(Member.invite_code == code, LIVE)
        return (await self.session.scalars(stmt)).first()

    async def add(self, member: Member) -> None:
        self.session.add(member)
        await self.session.flush()

    async def page(self, where: ColumnElement[bool], after: str | None, limit: int) -> list[Member]:
        stmt = select(Member).where(LIVE, where)
        if after is not None:
            stmt = stmt.where(Member.id > after)
        return list((await self.session.scalars(stmt.order_by(Member.id).limit(limit))).all())

    async def count(self, where: ColumnElement[bool]) -> int:
        return int(await self.session.scalar(select(func.count()).where(LIVE, where)) or 0)

    async def matches(self, member_id: str, where: ColumnElement[bool]) -> bool:
        stmt = select(Member.id).where(Member.id == member_id, LIVE, where)
        return (await self.session.scalar(stmt)) is not None

    async def take_referral_slot(self, referrer_id: str, day: date, cap: int) -> bool:
        """Count one more invitee for ``referrer_id`` today unless the cap is reached."""
        await self.session.execute(
            conflict_insert(self.session, ReferralDay)
            .values(referrer_id=referrer_id, day=day, count=0)
            .on_conflict_do_nothing()
        )
        taken = await self.session.execute(
            update(ReferralDay)
            .where(
                ReferralDay.referrer_id == referrer_id,
                ReferralDay.day == day,
                ReferralDay.count < cap,
            )
            .values(count=ReferralDay.count + 1)
        )
        return bool(taken.rowcount)  # type: ignore[attr-defined]

    async def invitees(self, referrer_id: str, after: str | None, limit: int) -> list[Member]:
        stmt = select(Member).where(Member.referrer_id == referrer_id)
        if after is not None:
            stmt = stmt.where(Member.id > after)
        return list((await self.session.scalars(stmt.order_by(Member.id).limit(limit))).all())

    async def referral_counts(self, referrer_id: str) -> tuple[int, int, int]:
        """(direct invitees, activated direct invitees, everyone down the tree)."""
        direct = await self.session.execute(
            select(func.count(), func.count(Member.referral_activated_at)).where(
                Member.referrer_id == referrer_id
            )
        )
        invited, activated = direct.one()
        tree = select(Member.id).where(Member.referrer_id == referrer_id).cte(recursive=True)
        child = aliased(Member)
        tree = tree.union_all(select(child.id).where(child.referrer_id == tree.c.id))
        descendants = await self.session.scalar(select(func.count()).select_from(tree))
        return int(invited), int(activated), int(descendants or 0)

    async def invitee_ids(self, referrer_id: str) -> list[str]:
        stmt = select(Member.id).where(Member.referrer_id == referrer_id).order_by(Member.id)
        return list((await self.session.scalars(stmt)).all())

    async def stamp_activities(self, latest: Mapping[str, datetime]) -> None:
        """Move members' last-active times forward (never back), one statement for all."""
        if latest:
            params = [{"member": member_id, "at": at} for member_id, at in latest.items()]
            await self.session.execute(STAMP_ACTIVITY, params)

    async def set_balances(self, balances: Mapping[str, int]) -> None:
        if balances:
            params = [{"member": member_id, "balance": b} for member_id, b in balances.items()]
            await self.session.execute(SET_BALANCE, params)

    async def with_pending_referral(self, member_ids: Collection[str]) -> set[str]:
        """Those of ``member_ids`` whose referral still waits for a first action."""
        stmt = select(Member.id).where(
            Member.id.in_(member_ids),
            LIVE,
            Member.referrer_id.is_not(None),
            Member.referral_activated_at.is_(None),
        )
        return set((await self.session.scalars(stmt)).all())

    async def activate_referral(self, member_id: str, at: datetime) -> str | None:
        """Mark a pending referral activated; the referrer's id if this call did it."""
        stmt = (
            update(Member)
            .where(
                Member.id == member_id,
                LIVE,
                Member.referrer_id.is_not(None),
                Member.referral_activated_at.is_(None),
                Member.referral_expires_at >= at,
            )
            .values(referral_activated_at=at)
            .returning(Member.referrer_id)
        )
        return (await self.session.execute(stmt)).scalar()

    async def set_fields(
        self, member_id: str, *where: ColumnElement[bool], **values: object
    ) -> None:
        stmt = update(Member).where(Member.id == member_id, *where).values(**values)
        await self.session.execute(stmt)


class CommunityRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, community_id: str) -> Community | None:
        return await self.session.get(Community, community_id)

    async def by_name(self, name: str) -> Community | None:
        return (await self.session.scalars(select(Community).where(Community.name == name))).first()

    async def existing_ids(self, ids: Sequence[str]) -> set[str]:
        rows = await self.session.scalars(select(Community.id).where(Community.id.in_(ids)))
        return set(rows.all())

    async def add(self, community: Community) -> None:
        self.session.add(community)
        await self.session.flush()

    async def page(self, after: str | None, limit: int) -> list[Community]:
        stmt = select(Community)
        if after is not None:
            stmt = stmt.where(Community.id > after)
        return list((await self.session.scalars(stmt.order_by(Community.id).limit(limit))).all())

    async def membership(self, community_id: str, member_id: str) -> Membership | None:
        return await self.session.get(Membership, (community_id, member_id))

    async def join(self, community_id: str, member_id: str, role: str, at: datetime) -> bool:
        """Add a membership and bump the count in one statement pair; False if already in."""
        inserted = await self.session.execute(
            conflict_insert(self.session, Membership)
            .values(community_id=community_id, member_id=member_id, role=role, joined_at=at)
            .on_conflict_do_nothing()
        )
        if not inserted.rowcount:  # type: ignore[attr-defined]
            return False
        await self._count(community_id, +1)
        return True

    async def leave(self, community_id: str, member_id: str) -> bool:
        membership = await self.membership(community_id, member_id)
        if membership is None:
            return False
        await self.session.delete(membership)
        await self.session.flush()
        await self._count(community_id, -1)
        return True

    async def _count(self, community_id: str, delta: int) -> None:
        await self.session.execute(
            update(Community)
            .where(Community.id == community_id)
            .values(member_count=Community.member_count + literal(delta))
        )

    async def members_page(
        self, community_id: str, after: str | None, limit: int
    ) -> list[Membership]:
        stmt = select(Membership).where(Membership.community_id == community_id)
        if after is not None:
            stmt = stmt.where(Membership.member_id > after)
        stmt = stmt.order_by(Membership.member_id).limit(limit)
        return list((await self.session.scalars(stmt)).all())

    async def memberships_of(self, member_id: str) -> list[Membership]:
        stmt = select(Membership).where(Membership.member_id == member_id)
        return list((await self.session.scalars(stmt.order_by(Membership.community_id))).all())

    async def moderated_by(self, member_id: str) -> list[str]:
        stmt = select(Membership.community_id).where(
            Membership.member_id == member_id, Membership.role.in_(("owner", "moderator"))
        )
        return list((await self.session.scalars(stmt)).all())

    async def share_moderated_community(self, moderator_id: str, member_id: str) -> bool:
        mine = aliased(Membership)
        theirs = aliased(Membership)
        stmt = (
            select(literal(1))
            .select_from(mine)
            .join(theirs, and_(theirs.community_id == mine.community_id))
            .where(
                mine.member_id == moderator_id,
                mine.role.in_(("owner", "moderator")),
                theirs.member_id == member_id,
            )
        )
        return (await self.session.scalar(stmt.limit(1))) is not None

    async def in_any(self, community_ids: Sequence[str], member_id: str) -> bool:
        stmt = select(Membership.member_id).where(
            Membership.member_id == member_id, Membership.community_id.in_(community_ids)
        )
        return (await self.session.scalar(stmt.limit(1))) is not None


class SegmentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, segment_id: str) -> Segment | None:
        return await self.session.get(Segment, segment_id)

    async def by_name(self, name: str) -> Segment | None:
        return (await self.session.scalars(select(Segment).where(Segment.name == name))).first()

    async def add(self, segment: Segment) -> None:
        self.session.add(segment)
        await self.session.flush()

    async def page(self, after: str | None, limit: int) -> list[Segment]:
        stmt = select(Segment)
        if after is not None:
            stmt = stmt.where(Segment.id > after)
        return list((await self.session.scalars(stmt.order_by(Segment.id).limit(limit))).all())
