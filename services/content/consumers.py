"""What the content service subscribes to: ``{event type: handler}``."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.content.communities import community_service
from shared.consumer import ConsumedEvent, Handler
from shared.events.contracts.members import (
    CommunityCreated,
    MemberErased,
    MemberJoinedCommunity,
    MemberLeftCommunity,
    MemberRoleChanged,
)


async def on_community_created(session: AsyncSession, event: ConsumedEvent) -> None:
    data: CommunityCreated = event.data
    await community_service.created(session, data)


async def on_member_joined_community(session: AsyncSession, event: ConsumedEvent) -> None:
    data: MemberJoinedCommunity = event.data
    await community_service.role_set(
        session, data.community_id, data.member_id, data.role, data.joined_at
    )


async def on_member_left_community(session: AsyncSession, event: ConsumedEvent) -> None:
    data: MemberLeftCommunity = event.data
    await community_service.left(session, data.community_id, data.member_id)


async def on_member_role_changed(session: AsyncSession, event: ConsumedEvent) -> None:
    data: MemberRoleChanged = event.data
    await community_service.role_set(
        session, data.community_id, data.member_id, data.role, data.changed_at
    )


async def on_member_erased(session: AsyncSession, event: ConsumedEvent) -> None:
    data: MemberErased = event.data
    await community_service.erase_member(session, data.member_id)


SUBSCRIPTIONS: dict[str, Handler] = {
    "community.created": on_community_created,
    "member.joined_community": on_member_joined_community,
    "member.left_community": on_member_left_community,
    "member.role_changed": on_member_role_changed,
    "member.erased": on_member_erased,
}
