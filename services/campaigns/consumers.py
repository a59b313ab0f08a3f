"""What the campaigns service subscribes to: ``{event type: handler}``.

Replicas of communities, memberships and published posts answer eligibility locally;
members' referral events drive referral campaigns.
"""

from __future__ import annotations

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.campaigns.models import Checkin, CommunityReplica, MembershipReplica, PostReplica
from services.campaigns.types import quiz, referral, trial
from shared.consumer import ConsumedEvent, Handler
from shared.db import conflict_insert
from shared.events.contracts import content, members


async def on_community_created(session: AsyncSession, event: ConsumedEvent) -> None:
    data: members.CommunityCreated = event.data
    await session.execute(
        conflict_insert(session, CommunityReplica)
        .values(id=data.community_id, timezone=data.timezone)
        .on_conflict_do_nothing(index_elements=["id"])
    )


async def on_member_joined_community(session: AsyncSession, event: ConsumedEvent) -> None:
    data: members.MemberJoinedCommunity = event.data
    stmt = conflict_insert(session, MembershipReplica).values(
        community_id=data.community_id, member_id=data.member_id, role=data.role
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["community_id", "member_id"], set_={"role": stmt.excluded.role}
        )
    )


async def on_member_role_changed(session: AsyncSession, event: ConsumedEvent) -> None:
    data: members.MemberRoleChanged = event.data
    await session.execute(
        update(MembershipReplica)
        .where(
            MembershipReplica.community_id == data.community_id,
            MembershipReplica.member_id == data.member_id,
        )
        .values(role=data.role)
    )


async def on_member_left_community(session: AsyncSession, event: ConsumedEvent) -> None:
    data: members.MemberLeftCommunity = event.data
    await session.execute(
        delete(MembershipReplica).where(
            MembershipReplica.community_id == data.community_id,
            MembershipReplica.member_id == data.member_id,
        )
    )


async def on_post_published(session: AsyncSession, event: ConsumedEvent) -> None:
    data: content.PostPublished = event.data
    await session.execute(
        conflict_insert(session, PostReplica)
        .values(
            id=data.post_id,
            community_id=data.community_id,
            author_id=data.author_id,
            published_at=data.published_at,
        )
        .on_conflict_do_nothing(index_elements=["id"])
    )
    await trial.reviewed(session, data.community_id, data.author_id, data.published_at)


async def on_post_gone(session: AsyncSession, event: ConsumedEvent) -> None:
    data: content.PostHidden | content.PostRemoved = event.data
    # A hidden or removed post cannot be entered any more; existing entries stay for review.
    await session.execute(delete(PostReplica).where(PostReplica.id == data.post_id))


async def on_quiz_answered(session: AsyncSession, event: ConsumedEvent) -> None:
    data: content.QuizAnswered = event.data
    await quiz.answered(session, data.post_id, data.member_id, data.score, data.answered_at)


async def on_member_referred(session: AsyncSession, event: ConsumedEvent) -> None:
    data: members.MemberReferred = event.data
    await referral.referred(session, data.member_id, data.referrer_id, data.referred_at)


async def on_member_referral_activated(session: AsyncSession, event: ConsumedEvent) -> None:
    data: members.MemberReferralActivated = event.data
    await referral.activated(session, data.member_id, data.activated_at)


async def on_member_erased(session: AsyncSession, event: ConsumedEvent) -> None:
    data: members.MemberErased = event.data
    await referral.invitee_erased(session, data.member_id, data.erased_at)
    # Notes and photos are personal data; the check-in days stay for counts.
    await session.execute(
        update(Checkin).where(Checkin.member_id == data.member_id).values(note=None, photo_url=None)
    )
    await session.execute(
        delete(MembershipReplica).where(MembershipReplica.member_id == data.member_id)
    )


SUBSCRIPTIONS: dict[str, Handler] = {
    "community.created": on_community_created,
    "member.joined_community": on_member_joined_community,
    "member.role_changed": on_member_role_changed,
    "member.left_community": on_member_left_community,
    "member.referred": on_member_referred,
    "member.referral_activated": on_member_referral_activated,
    "member.erased": on_member_erased,
    "post.published": on_post_published,
    "post.hidden": on_post_gone,
    "post.removed": on_post_gone,
    "quiz.answered": on_quiz_answered,
}
