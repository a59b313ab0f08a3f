"""What the analytics service subscribes to: ``{event type: handler}``.

Each handler only unpacks its contract model and hands the facts to ``Ingest``, which
adds them to the batch's rollup buffer (buffer.py writes it with one statement per table
when the transaction commits). Every event type shares one ``Batched`` subscription, so
the consumer hands a whole fetch to ``ingest_events`` in one call: past the rebuild gate
once, each event kept in the raw store, then applied in order. A rebuild replays the raw
store through ``apply_events`` itself: one definition of every metric.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics import gate
from services.analytics.ingest import Ingest
from shared.consumer import Batched, ConsumedEvent
from shared.events.contracts import campaigns, content, members, rewards

FactHandler = Callable[[Ingest, Any], Awaitable[None]]


async def on_member_registered(ingest: Ingest, data: members.MemberRegistered) -> None:
    await ingest.registered(data.member_id, data.channel, data.registered_at)


async def on_member_erased(ingest: Ingest, data: members.MemberErased) -> None:
    await ingest.erased(data.member_id, data.erased_at)


async def on_member_referred(ingest: Ingest, data: members.MemberReferred) -> None:
    ingest.action(
        "member.referred", data.member_id, None, data.referred_at, active=False, counter="referrals"
    )


async def on_community_created(ingest: Ingest, data: members.CommunityCreated) -> None:
    await ingest.community_created(data.community_id, data.timezone, data.created_at)


async def on_member_joined_community(ingest: Ingest, data: members.MemberJoinedCommunity) -> None:
    await ingest.joined_community(data.community_id, data.member_id, data.joined_at)


async def on_member_left_community(ingest: Ingest, data: members.MemberLeftCommunity) -> None:
    await ingest.left_community(data.community_id, data.member_id, data.left_at)


async def on_post_published(ingest: Ingest, data: content.PostPublished) -> None:
    await ingest.post_published(
        data.post_id,
        data.community_id,
        data.author_id,
        data.author_kind,
        data.post_type,
        data.published_at,
    )


async def on_comment_created(ingest: Ingest, data: content.CommentCreated) -> None:
    ingest.interaction(
        "comment.created",
        data.post_id,
        data.community_id,
        data.author_id,
        data.created_at,
        post_author_id=data.post_author_id,
        post_counter="comments",
        counter="comments",
    )


async def on_reaction_added(ingest: Ingest, data: content.ReactionAdded) -> None:
    ingest.interaction(
        "reaction.added",
        data.post_id,
        data.community_id,
        data.member_id,
        data.reacted_at,
        post_author_id=data.post_author_id,
        post_counter="reactions",
        counter="reactions",
    )


async def on_post_shared(ingest: Ingest, data: content.PostShared) -> None:
    ingest.interaction(
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


async def on_post_viewed(ingest: Ingest, data: content.PostViewed) -> None:
    ingest.viewed(
        data.post_id,
        data.community_id,
        data.member_id,
        data.via_share_id is not None,
        data.viewed_at,
    )


async def on_poll_voted(ingest: Ingest, data: content.PollVoted) -> None:
    await _answer(ingest, "poll.voted", data, data.member_id, data.voted_at)


async def on_quiz_answered(ingest: Ingest, data: content.QuizAnswered) -> None:
    await _answer(ingest, "quiz.answered", data, data.member_id, data.answered_at)


async def on_survey_answered(ingest: Ingest, data: content.SurveyAnswered) -> None:
    await _answer(ingest, "survey.answered", data, data.member_id, data.answered_at)


async def _answer(
    ingest: Ingest, event_type: str, data: content.PostEvent, member_id: str, at: datetime
) -> None:
    ingest.interaction(
        event_type,
        data.post_id,
        data.community_id,
        member_id,
        at,
        post_counter="answers",
        counter="answers",
    )


async def on_campaign_checked_in(ingest: Ingest, data: campaigns.CampaignCheckedIn) -> None:
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


async def on_campaign_created(ingest: Ingest, data: campaigns.CampaignCreated) -> None:
    await ingest.campaign_target(
        data.campaign_id,
        data.community_id,
        data.starts_at,
        data.ends_at,
        data.segment_id,
        with_segment=True,
        at=data.created_at,
    )


async def on_campaign_launched(ingest: Ingest, data: campaigns.CampaignLaunched) -> None:
    await ingest.campaign_target(
        data.campaign_id,
        data.community_id,
        data.starts_at,
        data.ends_at,
        with_segment=False,
        at=data.launched_at,
    )


async def on_campaign_joined(ingest: Ingest, data: campaigns.CampaignJoined) -> None:
    ingest.campaign_progress("campaign.joined", data.campaign_id, data.member_id, data.joined_at)


async def on_campaign_entry_submitted(
    ingest: Ingest, data: campaigns.CampaignEntrySubmitted
) -> None:
    ingest.campaign_progress(
        "campaign.entry_submitted", data.campaign_id, data.member_id, data.submitted_at
    )


async def on_campaign_voted(ingest: Ingest, data: campaigns.CampaignVoted) -> None:
    ingest.campaign_progress("campaign.voted", data.campaign_id, data.voter_id, data.voted_at)


async def on_campaign_completed(ingest: Ingest, data: campaigns.CampaignCompleted) -> None:
    ingest.campaign_progress(
        "campaign.completed", data.campaign_id, data.member_id, data.completed_at
    )


async def on_campaign_reward_granted(ingest: Ingest, data: campaigns.CampaignRewardGranted) -> None:
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


async def on_points_earned(ingest: Ingest, data: rewards.PointsEarned) -> None:
    ingest.action(
        "points.earned",
        data.member_id,
        None,
        data.earned_at,
        active=False,
        counter="points_earned",
        amount=data.amount,
    )


async def on_coupon_redeemed(ingest: Ingest, data: rewards.CouponRedeemed) -> None:
    if data.member_id is None:  # redeemed at a till without a member: a count only
        return
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


async def on_reward_redeemed(ingest: Ingest, data: rewards.RewardRedeemed) -> None:
    ingest.action(
        "reward.redeemed",
        data.member_id,
        None,
        data.redeemed_at,
        active=False,
        counter="rewards_redeemed",
    )


async def on_tier_changed(ingest: Ingest, data: rewards.TierChanged) -> None:
    ingest.action(
        "tier.changed",
        data.member_id,
        None,
        data.changed_at,
        active=False,
        counter="tier_changes",
        dimension=data.tier,
    )


HANDLERS: dict[str, FactHandler] = {
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


async def apply_events(
    session: AsyncSession, events: Sequence[ConsumedEvent], *, record: bool = False
) -> None:
    """Apply events to the rollups in their order; ``record`` keeps each in the raw store.

    An event is recorded just before it applies: an erasure writes what is buffered and
    events after it in the batch are stored as events about an erased member.
    """
    ingest = Ingest(session)
    for event in events:
        handler = HANDLERS.get(event.envelope.type)
        if handler is None:  # a type no longer subscribed to (a rebuild's old events)
            continue
        if record:
            ingest.buffer.record(event)
        await handler(ingest, event.data)


async def ingest_events(session: AsyncSession, events: list[ConsumedEvent]) -> None:
    """The consumer's run of events: one transaction, the gate entered once."""
    await gate.enter(session)
    await apply_events(session, events, record=True)


INGEST = Batched(ingest_events)
# One subscription object for every type: the consumer groups neighbours that share it,
# so a fetch of mixed types is still one run.
SUBSCRIPTIONS: dict[str, Batched] = dict.fromkeys(HANDLERS, INGEST)
