"""Events the members service publishes; their data models live in shared.events.contracts."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.members.models import Member
from shared.events.contracts.members import MemberRegistered
from shared.outbox import add_event

SOURCE = "/services/members"


async def member_registered(session: AsyncSession, member: Member) -> None:
    data = MemberRegistered(
        member_id=member.id,
        nickname=member.nickname,
        channel=member.channel,
        region=member.region,
        registered_at=member.created_at,
    )
    await add_event(session, data, subject=member.id, source=SOURCE)
