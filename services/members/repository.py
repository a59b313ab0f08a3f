from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.members.models import Member


class MemberRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, member_id: str) -> Member | None:
        return await self.session.get(Member, member_id)

    async def contact_taken(self, email: str | None, phone: str | None) -> bool:
        clauses = []
        if email:
            clauses.append(Member.email == email)
        if phone:
            clauses.append(Member.phone == phone)
        if not clauses:
            return False
        return (
            await self.session.scalar(select(Member.id).where(or_(*clauses)).limit(1))
        ) is not None

    async def add(self, member: Member) -> None:
        self.session.add(member)
        await self.session.flush()
