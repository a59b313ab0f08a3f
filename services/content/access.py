"""Who may do what in a community, from the token and the replicated roles.

Moderation authority for community C: an operator; a staff moderator whose
token lists C in ``communities``; or a member whose replicated role in C is
owner or moderator.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.content.repository import CommunityRepository
from shared.auth import STAFF_ROLES, Principal, Role
from shared.errors import Forbidden

COMMUNITY_MODERATOR_ROLES = frozenset({"owner", "moderator"})


class NotAModerator(Forbidden):
    code, title = "not-a-moderator", "Not a moderator of this community"


async def may_moderate(session: AsyncSession, principal: Principal, community_id: str) -> bool:
    if principal.is_operator:
        return True
    if principal.role is Role.MODERATOR:
        return community_id in principal.communities
    if principal.role is Role.MEMBER:
        role = await CommunityRepository(session).role_of(community_id, principal.subject)
        return role in COMMUNITY_MODERATOR_ROLES
    return False


async def ensure_moderator(session: AsyncSession, principal: Principal, community_id: str) -> None:
    if not await may_moderate(session, principal, community_id):
        raise NotAModerator(f"Only moderators of community {community_id} may do this")


def is_staff(principal: Principal) -> bool:
    return principal.role in STAFF_ROLES


def author_kind(principal: Principal) -> str:
    return "member" if principal.role is Role.MEMBER else "staff"
