"""Segments: saved rules, previews, member lists, and membership checks for other services."""

from __future__ import annotations

import uuid

from pydantic import TypeAdapter
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.members.models import Member, Segment
from services.members.repository import CommunityRepository, MemberRepository, SegmentRepository
from services.members.schemas import SegmentCount, SegmentCreate, SegmentUpdate
from services.members.segments import Rule, community_ids, condition
from services.members.service import field_error
from shared.auth import Principal
from shared.db import utcnow
from shared.errors import Conflict, NotFound, Unprocessable

RULE = TypeAdapter(Rule)


class SegmentNotFound(NotFound):
    code, title = "segment-not-found", "Segment not found"


class NotInSegment(NotFound):
    code, title = "not-in-segment", "Not in segment"


class SegmentNameTaken(Conflict):
    code, title = "segment-name-taken", "Segment name taken"


class SegmentService:
    async def get(self, session: AsyncSession, segment_id: str) -> Segment:
        segment = await SegmentRepository(session).get(segment_id)
        if segment is None:
            raise SegmentNotFound(f"No segment with id {segment_id}")
        return segment

    def rule_of(self, segment: Segment) -> Rule:
        return RULE.validate_python(segment.rules)

    async def _check_communities(self, session: AsyncSession, rule: Rule) -> None:
        named = community_ids(rule)
        if not named:
            return
        unknown = named - await CommunityRepository(session).existing_ids(sorted(named))
        if unknown:
            raise field_error(
                Unprocessable, "rules", f"Unknown community ids: {', '.join(sorted(unknown))}"
            )

    async def create(
        self, session: AsyncSession, principal: Principal, data: SegmentCreate
    ) -> Segment:
        await self._check_communities(session, data.rules)
        repo = SegmentRepository(session)
        if await repo.by_name(data.name) is not None:
            raise SegmentNameTaken(f"A segment is already called {data.name!r}")
        now = utcnow()
        segment = Segment(
            id=str(uuid.uuid4()),
            name=data.name,
            description=data.description,
            rules=RULE.dump_python(data.rules, mode="json", exclude_none=True),
            created_by=principal.subject,
            created_at=now,
            updated_at=now,
        )
        try:
            async with session.begin_nested():
                await repo.add(segment)
        except IntegrityError:
            raise SegmentNameTaken(f"A segment is already called {data.name!r}") from None
        return segment

    async def update(self, session: AsyncSession, segment: Segment, data: SegmentUpdate) -> Segment:
        changes = data.model_dump(exclude_unset=True, exclude={"rules"})
        for name, value in changes.items():
            if value is None:
                raise field_error(Unprocessable, name, f"{name} cannot be empty")
            setattr(segment, name, value)
        if data.rules is not None:
            await self._check_communities(session, data.rules)
            segment.rules = RULE.dump_python(data.rules, mode="json", exclude_none=True)
        segment.updated_at = utcnow()
        try:
            async with session.begin_nested():
                await session.flush()
        except IntegrityError:
            raise SegmentNameTaken("A segment already has this name") from None
        return segment

    async def count(self, session: AsyncSession, rule: Rule) -> SegmentCount:
        await self._check_communities(session, rule)
        now = utcnow()
        return SegmentCount(
            count=await MemberRepository(session).count(condition(rule, now)), evaluated_at=now
        )

    async def members(
        self, session: AsyncSession, segment: Segment, after: str | None, limit: int
    ) -> list[Member]:
        where = condition(self.rule_of(segment), utcnow())
        return await MemberRepository(session).page(where, after, limit)

    async def contains(self, session: AsyncSession, segment: Segment, member_id: str) -> bool:
        where = condition(self.rule_of(segment), utcnow())
        return await MemberRepository(session).matches(member_id, where)


segment_service = SegmentService()
