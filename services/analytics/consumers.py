"""What the analytics service subscribes to: ``{event type: handler}``.

Each handler only unpacks its contract model and hands the facts to ``Ingest``. The
consumer runs them through ``recorded``: past the rebuild gate, and with the event
kept in the raw store in the same transaction. A rebuild replays the raw store
through ``HANDLERS`` themselves: one definition of every metric.
"""

from __future__ import annotations

import functools
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics import gate
from services.analytics.buffer import buffer_of
from services.analytics.ingest import Ingest
from shared.consumer import ConsumedEvent, Handler
from shared.events.contracts import campaigns, content, members, rewards


async def on_member_registered(session: AsyncSession, event: ConsumedEvent) -> None:
    data: members.MemberRegistered = event.data
    await Ingest(session).registered(data.member_id, data.channel, data.registered_at)


async def on_member_erased(session: AsyncSession, event: ConsumedEvent) -> None:
    data: members.MemberErased = event.data
    await Ingest(session).erased(data.member_id, data.erased_at)


async def on_member_referred(session: AsyncSession, event: ConsumedEvent) -> None:
    data: members.MemberReferred = event.data
    Ingest(session).action(
        "member.referred", data.member_id, None, data.referred_at, active=False, counter="referrals"
    )


async def on_community_created(session: AsyncSession, event: ConsumedEvent) -> None:
    data: members.CommunityCreated = event.data
    await Ingest(session).community_created(data.community_id, data.timezone, data.created_at)


async def on_member_joined_community(session: AsyncSession, event: ConsumedEvent) -> None:
    data: members.MemberJoinedCommunity = event.data
    await Ingest(session).joined_community(data.community_id, data.member_id, data.joined_at)


async def on_member_left_community(session: AsyncSession, event: ConsumedEvent) -> None:
    data: members.MemberLeftCommunity = event.data
    await Ingest(session).left_community(data.community_id, data.member_id, data.left_at)


async def on_post_published(session: AsyncSession, event: ConsumedEvent) -> None:
    data: content.PostPublished = event.data
    await Ingest(session).post_published(
        data.post_id,
        data.community_id,
        data.author_id,
        data.author_kind,
        data.post_type,
        data.published_at,
    )


async def on_comment_created(session: AsyncSession, event: ConsumedEvent) -> None:
    data: content.CommentCreated = event.data
    Ingest(session).interaction(
        "comment.created",
        data.post_id,
        data.community_id,
        data.author_id,
        data.created_at,
        post_author_id=data.post_author_id,
        post_counter="comments",
        counter="comments",
    )


async def on_reaction_added(session: AsyncSession, event: ConsumedEvent) -> None:
    data: content.ReactionAdded = event.data
    Ingest(session).interaction(
        "reaction.added",
        data.post_id,
        data.community_id,
        data.member_id,
        data.reacted_at,
        post_author_id=data.post_author_id,
        post_counter="reactions",
        counter="reactions",
    )


async def on_post_shared(session: AsyncSession, event: ConsumedEvent) -> None:
    data: content.PostShared = event.data
    Ingest(session).interaction(
        "post.shared",
        data.post_id,
        data.community_id,
        data.member_id,
        data.shared_at,
        post_author_id=data.post_author_id,
        post_counter="shares",
        counter="shares",
        dimension=data.channel,
    )


async def on_post_viewed(session: AsyncSession, event: ConsumedEvent) -> None:
    data: content.PostViewed = event.data
    Ingest(session).viewed(
        data.post_id,
        data.community_id,
        data.member_id,
        data.via_share_id is not None,
        data.viewed_at,
    )


async def on_poll_voted(session: AsyncSession, event: ConsumedEvent) -> None:
    data: content.PollVoted = event.data
    await _answer(session, "poll.voted", data, data.member_id, data.voted_at)


async def on_quiz_answered(session: AsyncSession, event: ConsumedEvent) -> None:
    data: content.QuizAnswered = event.data
    await _answer(session, "quiz.answered", data, data.member_id, data.answered_at)


async def on_survey_answered(session: AsyncSession, event: ConsumedEvent) -> None:
    data: content.SurveyAnswered = event.data
    await _answer(session, "survey.answered", data, data.member_id, data.answered_at)


async def _answer(
    session: AsyncSession, event_type: str, data: content.PostEvent, member_id: str, at: datetime
) -> None:
    Ingest(session).interaction(
        event_type,
        data.post_id,
        data.community_id,
        member_id,
        at,
        post_counter="answers",
        counter="answers",
    )


async def on_campaign_checked_in(session: AsyncSession, event: ConsumedEvent) -> None:
    data: campaigns.CampaignCheckedIn = event.data
    ingest = Ingest(session)
    ingest.action(
        "campaign.checked_in",
        data.member_id,
        data.community_id,
        data.checked_in_at,
        counter="checkins",
    )
    ingest.campaign_steps(
        "campaign.checked_in", data.campaign_id, data.member_id, data.checked_in_at
    )


async def on_campaign_created(session: AsyncSession, event: ConsumedEvent) -> None:
    data: campaigns.CampaignCreated = event.data
    await Ingest(session).campaign_target(
        data.campaign_id,
        data.community_id,
        data.starts_at,
        data.ends_at,
        data.segment_id,
        with_segment=True,
        at=data.created_at,
    )


async def on_campaign_launched(session: AsyncSession, event: ConsumedEvent) -> None:
    data: campaigns.CampaignLaunched = event.data
    await Ingest(session).campaign_target(
        data.campaign_id,
        data.community_id,
        data.starts_at,
        data.ends_at,
        with_segment=False,
        at=data.launched_at,
    )


async def on_campaign_joined(session: AsyncSession, event: ConsumedEvent) -> None:
    data: campaigns.CampaignJoined = event.data
    Ingest(session).campaign_progress(
        "campaign.joined", data.campaign_id, data.member_id, data.joined_at
    )


async def on_campaign_entry_submitted(session: AsyncSession, event: ConsumedEvent) -> None:
    data: campaigns.CampaignEntrySubmitted = event.data
    Ingest(session).campaign_progress(
        "campaign.entry_submitted", data.campaign_id, data.member_id, data.submitted_at
    )


async def on_campaign_voted(session: AsyncSession, event: ConsumedEvent) -> None:
    data: campaigns.CampaignVoted = event.data
    Ingest(session).campaign_progress(
        "campaign.voted", data.campaign_id, data.voter_id, data.voted_at
    )


async def on_campaign_completed(session: AsyncSession, event: ConsumedEvent) -> None:
    data: campaigns.CampaignCompleted = event.data
    Ingest(session).campaign_progress(
        "campaign.completed", data.campaign_id, data.member_id, data.completed_at
    )


async def on_campaign_reward_granted(session: AsyncSession, event: ConsumedEvent) -> None:
    data: campaigns.CampaignRewardGranted = event.data
    ingest = Ingest(session)
    ingest.action(
        "campaign.reward_granted",
        data.member_id,
        None,
        data.granted_at,
        active=False,
        counter="rewards_granted",
    )
    ingest.campaign_steps(
        "campaign.reward_granted", data.campaign_id, data.member_id, data.granted_at
    )


async def on_points_earned(session: AsyncSession, event: ConsumedEvent) -> None:
    data: rewards.PointsEarned = event.data
    Ingest(session).action(
        "points.earned",
        data.member_id,
        None,
        data.earned_at,
        active=False,
        counter="points_earned",
        amount=data.amount,
    )


async def on_coupon_redeemed(session: AsyncSession, event: ConsumedEvent) -> None:
    data: rewards.CouponRedeemed = event.data
    if data.member_id is None:  # redeemed at a till without a member: a count only
        return
    ingest = Ingest(session)
    ingest.action(
        "coupon.redeemed",
        data.member_id,
        None,
        data.redeemed_at,
        active=False,
        counter="coupons_redeemed",
    )
    if data.campaign_id:
        ingest.campaign_steps("coupon.redeemed", data.campaign_id, data.member_id, data.redeemed_at)


async def on_reward_redeemed(session: AsyncSession, event: ConsumedEvent) -> None:
    data: rewards.RewardRedeemed = event.data
    Ingest(session).action(
        "reward.redeemed",
        data.member_id,
        None,
        data.redeemed_at,
        active=False,
        counter="rewards_redeemed",
    )


async def on_tier_changed(session: AsyncSession, event: ConsumedEvent) -> None:
    data: rewards.TierChanged = event.data
    Ingest(session).action(
        "tier.changed",
        data.member_id,
        None,
        data.changed_at,
        active=False,
        counter="tier_changes",
        dimension=data.tier,
    )


HANDLERS: dict[str, Handler] = {
    "member.registered": on_member_registered,
    "member.erased": on_member_erased,
    "member.referred": on_member_referred,
    "community.created": on_community_created,
    "member.joined_community": on_member_joined_community,
    "member.left_community": on_member_left_community,
    "post.published": on_post_published,
    "comment.created": on_comment_created,
    "reaction.added": on_reaction_added,
    "post.shared": on_post_shared,
    "post.viewed": on_post_viewed,
    "poll.voted": on_poll_voted,
    "quiz.answered": on_quiz_answered,
    "survey.answered": on_survey_answered,
    "campaign.checked_in": on_campaign_checked_in,
    "campaign.created": on_campaign_created,
    "campaign.launched": on_campaign_launched,
    "campaign.joined": on_campaign_joined,
    "campaign.entry_submitted": on_campaign_entry_submitted,
    "campaign.voted": on_campaign_voted,
    "campaign.completed": on_campaign_completed,
    "campaign.reward_granted": on_campaign_reward_granted,
    "points.earned": on_points_earned,
    "coupon.redeemed": on_coupon_redeemed,
    "reward.redeemed": on_reward_redeemed,
    "tier.changed": on_tier_changed,
}


def recorded(handler: Handler) -> Handler:
    @functools.wraps(handler)
    async def apply(session: AsyncSession, event: ConsumedEvent) -> None:
        await gate.enter(session)
        buffer_of(session).record(event)
        await handler(session, event)

    return apply


SUBSCRIPTIONS: dict[str, Handler] = {name: recorded(h) for name, h in HANDLERS.items()}
