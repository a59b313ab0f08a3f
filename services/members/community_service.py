"""Communities (groups): creation, joining and leaving, roles, and who may manage them."""

from __future__ import annotations

import uuid

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.members import events
from services.members.models import Community, Membership
from services.members.repository import CommunityRepository, MemberRepository
from services.members.schemas import (
    CommunityCreate,
    CommunityRole,
    CommunityUpdate,
    MembershipCreate,
    Visibility,
)
from services.members.service import (
    MemberNotFound,
    OwnerMustTransfer,
    field_error,
    new_invite_code,
)
from shared.auth import Principal, Role
from shared.db import utcnow
from shared.errors import Conflict, Forbidden, NotFound, Unprocessable

MANAGERS = (CommunityRole.OWNER.value, CommunityRole.MODERATOR.value)


class CommunityNotFound(NotFound):
    code, title = "community-not-found", "Community not found"


class CommunityNameTaken(Conflict):
    code, title = "community-name-taken", "Community name taken"


class NotAMember(NotFound):
    code, title = "not-a-member", "Not a member of this community"


class CommunityService:
    async def get(self, session: AsyncSession, community_id: str) -> Community:
        community = await CommunityRepository(session).get(community_id)
        if community is None:
            raise CommunityNotFound(f"No community with id {community_id}")
        return community

    async def role_of(self, session: AsyncSession, community_id: str, member_id: str) -> str | None:
        membership = await CommunityRepository(session).membership(community_id, member_id)
        return membership.role if membership else None

    async def manages(self, session: AsyncSession, principal: Principal, community_id: str) -> bool:
        """Operators, staff moderators of the community, and its owner and moderators."""
        if principal.is_operator:
            return True
        if principal.role is Role.MODERATOR:
            return community_id in principal.communities
        if principal.role is Role.MEMBER:
            return await self.role_of(session, community_id, principal.subject) in MANAGERS
        return False

    async def create(
        self, session: AsyncSession, principal: Principal, data: CommunityCreate
    ) -> Community:
        if principal.role is Role.MEMBER:
            if data.owner_id not in (None, principal.subject):
                raise Forbidden("Members create communities they own themselves")
            owner_id = principal.subject
        elif principal.is_operator:
            if data.owner_id is None:
                raise field_error(Unprocessable, "owner_id", "Operators name the owning member")
            owner_id = data.owner_id
        else:
            raise Forbidden("Only operators and members create communities")
        owner = await MemberRepository(session).get(owner_id)
        if owner is None or owner.erased_at is not None:
            raise field_error(Unprocessable, "owner_id", f"No member with id {owner_id}")
        repo = CommunityRepository(session)
        if await repo.by_name(data.name) is not None:
            raise CommunityNameTaken(f"A community is already called {data.name!r}")
        now = utcnow()
        community = Community(
            id=str(uuid.uuid4()),
            name=data.name,
            logo_url=str(data.logo_url) if data.logo_url else None,
            theme=data.theme,
            description=data.description,
            rules=data.rules,
            visibility=data.visibility.value,
            timezone=data.timezone,
            owner_id=owner_id,
            invite_code=new_invite_code(),
            member_count=0,
            created_at=now,
            updated_at=now,
        )
        try:
            async with session.begin_nested():
                await repo.add(community)
        except IntegrityError:
            raise CommunityNameTaken(f"A community is already called {data.name!r}") from None
        await events.community_created(session, community)
        await repo.join(community.id, owner_id, CommunityRole.OWNER.value, now)
        await events.member_joined_community(
            session, community.id, owner_id, CommunityRole.OWNER.value, now
        )
        return community

    async def update(
        self,
        session: AsyncSession,
        principal: Principal,
        community: Community,
        data: CommunityUpdate,
    ) -> Community:
        if not await self.manages(session, principal, community.id):
            raise Forbidden("Only the community's owner, moderators and operators edit it")
        changes = data.model_dump(exclude_unset=True)
        renamed = "name" in changes and changes["name"] != community.name
        if renamed and await CommunityRepository(session).by_name(changes["name"]) is not None:
            raise CommunityNameTaken(f"A community is already called {changes['name']!r}")
        for name, value in changes.items():
            if value is None and name in ("name", "description", "rules", "visibility"):
                raise field_error(Unprocessable, name, f"{name} cannot be empty")
            setattr(community, name, str(value) if name == "logo_url" and value else value)
        if isinstance(community.visibility, Visibility):
            community.visibility = community.visibility.value
        community.updated_at = utcnow()
        try:
            async with session.begin_nested():
                await session.flush()
        except IntegrityError:
            raise CommunityNameTaken("A community already has this name") from None
        return community

    async def join(
        self,
        session: AsyncSession,
        principal: Principal,
        community: Community,
        data: MembershipCreate,
    ) -> Membership:
        member_id = data.member_id or principal.subject
        adding_someone_else = member_id != principal.subject
        manager = await self.manages(session, principal, community.id)
        if adding_someone_else and not manager:
            raise Forbidden("Only the community's managers add other members")
        if not adding_someone_else and principal.role is not Role.MEMBER:
            raise field_error(Unprocessable, "member_id", "Staff add members by member_id")
        invited = data.invite_code is not None and data.invite_code.upper() == community.invite_code
        if data.invite_code is not None and not invited:
            raise field_error(Unprocessable, "invite_code", "Wrong invite code for this community")
        if community.visibility == Visibility.INVITE_ONLY.value and not (invited or manager):
            raise Forbidden("This community is invite-only: an invite code is needed")
        member = await MemberRepository(session).get(member_id)
        if member is None or member.erased_at is not None:
            raise MemberNotFound(f"No member with id {member_id}")
        repo = CommunityRepository(session)
        now = utcnow()
        if await repo.join(community.id, member_id, CommunityRole.MEMBER.value, now):
            await events.member_joined_community(
                session, community.id, member_id, CommunityRole.MEMBER.value, now
            )
        membership = await repo.membership(community.id, member_id)
        assert membership is not None
        return membership

    async def leave(
        self, session: AsyncSession, principal: Principal, community: Community, member_id: str
    ) -> None:
        repo = CommunityRepository(session)
        membership = await repo.membership(community.id, member_id)
        if membership is None:
            raise NotAMember(f"Member {member_id} is not in this community")
        if principal.subject != member_id:
            if not await self.manages(session, principal, community.id):
                raise Forbidden("Only the member itself and the community's managers remove it")
            if membership.role != CommunityRole.MEMBER.value and not principal.is_operator:
                actor_role = await self.role_of(session, community.id, principal.subject)
                if actor_role != CommunityRole.OWNER.value:
                    raise Forbidden("Only the owner or an operator removes a moderator")
        if membership.role == CommunityRole.OWNER.value:
            raise OwnerMustTransfer("The owner cannot leave; transfer ownership first")
        await repo.leave(community.id, member_id)
        await events.member_left_community(session, community.id, member_id, utcnow())

    async def set_role(
        self,
        session: AsyncSession,
        principal: Principal,
        community: Community,
        member_id: str,
        role: CommunityRole,
    ) -> Membership:
        """Owners and operators set roles; making someone owner hands ownership over."""
        actor_role = await self.role_of(session, community.id, principal.subject)
        if not (principal.is_operator or actor_role == CommunityRole.OWNER.value):
            raise Forbidden("Only the community's owner or an operator changes roles")
        repo = CommunityRepository(session)
        membership = await repo.membership(community.id, member_id)
        if membership is None:
            raise NotAMember(f"Member {member_id} is not in this community")
        if membership.role == role.value:
            return membership
        if membership.role == CommunityRole.OWNER.value:
            raise OwnerMustTransfer("Ownership moves by making another member owner")
        now = utcnow()
        changes = [(membership, role.value)]
        if role is CommunityRole.OWNER:
            previous_owner = await repo.membership(community.id, community.owner_id)
            if previous_owner is not None:
                changes.append((previous_owner, CommunityRole.MODERATOR.value))
            community.owner_id = member_id
            community.updated_at = now
        for target, new_role in changes:
            before, target.role = target.role, new_role
            await events.member_role_changed(
                session, community.id, target.member_id, new_role, before, principal.subject, now
            )
        await session.flush()
        return membership


community_service = CommunityService()
