from __future__ import annotations

import uuid

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.members import events
from services.members.models import Member
from services.members.repository import MemberRepository
from services.members.schemas import MemberCreate
from shared.auth import Principal
from shared.db import utcnow
from shared.errors import Conflict, Forbidden, NotFound


class MemberNotFound(NotFound):
    title = "Member not found"


class ContactAlreadyRegistered(Conflict):
    code, title = "contact-already-registered", "Contact already registered"


class MemberService:
    async def register(self, session: AsyncSession, data: MemberCreate) -> Member:
        repo = MemberRepository(session)
        email = data.email.lower() if data.email else None
        phone = data.phone.replace(" ", "").replace("-", "") if data.phone else None
        if await repo.contact_taken(email, phone):
            raise ContactAlreadyRegistered(
                "A member with this e-mail or phone is already registered"
            )
        member = Member(
            id=str(uuid.uuid4()),
            nickname=data.nickname,
            channel=data.channel.value,
            region=data.region,
            email=email,
            phone=phone,
            created_at=utcnow(),
        )
        try:
            await repo.add(member)
        except IntegrityError:  # lost a race with a concurrent registration
            raise ContactAlreadyRegistered(
                "A member with this e-mail or phone is already registered"
            ) from None
        await events.member_registered(session, member)
        return member

    async def get(self, session: AsyncSession, member_id: str) -> Member:
        member = await MemberRepository(session).get(member_id)
        if member is None:
            raise MemberNotFound(f"No member with id {member_id}")
        return member

    def ensure_may_see_contacts(self, principal: Principal, member: Member) -> None:
        if not principal.can_act_for(member.id):
            raise Forbidden("Only the member and operators see contact details")


member_service = MemberService()
