"""What the members service subscribes to: ``{event type: handler}``.

Fan tiers and points balances come from rewards (so segments can filter on
them); activity stamps come from content and campaigns: the last time a member
did something, which also activates a pending referral.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.members.repository import LIVE, MemberRepository
from services.members.service import stamp_activities
from shared.consumer import Batched, ConsumedEvent, Subscription
from shared.events.contracts import campaigns, content, rewards


async def on_tier_changed(session: AsyncSession, event: ConsumedEvent) -> None:
    data: rewards.TierChanged = event.data
    await MemberRepository(session).set_fields(
        data.member_id, LIVE, tier=data.tier, tier_name=data.tier_name
    )


async def on_balances_changed(session: AsyncSession, events: list[ConsumedEvent]) -> None:
    # Each event carries the balance after it: the last of a run per member is the state
    # one call per event would leave.
    data: rewards.PointsEarned | rewards.PointsSpent | rewards.PointsExpired
    balances: dict[str, int] = {}
    for event in events:
        data = event.data
        balances[data.member_id] = data.balance
    await MemberRepository(session).set_balances(balances)


def _actor_and_time(event: ConsumedEvent) -> tuple[str, datetime] | None:
    data = event.data
    match data:
        case content.PostPublished():
            return (data.author_id, data.published_at) if data.author_kind == "member" else None
        case content.CommentCreated():
            return data.author_id, data.created_at
        case content.ReactionAdded():
            return data.member_id, data.reacted_at
        case content.PostShared():
            return data.member_id, data.shared_at
        case content.PollVoted():
            return data.member_id, data.voted_at
        case content.QuizAnswered() | content.SurveyAnswered():
            return data.member_id, data.answered_at
        case campaigns.CampaignCheckedIn():
            return data.member_id, data.checked_in_at
    return None


async def on_members_acted(session: AsyncSession, events: list[ConsumedEvent]) -> None:
    acts = []
    for event in events:
        found = _actor_and_time(event)
        if found is not None:
            acts.append((*found, event.envelope.type))
    await stamp_activities(session, acts)


# Batched: a run of ledger or activity events is one statement, not one or two per event.
on_balance_changed = Batched(on_balances_changed)
on_member_acted = Batched(on_members_acted)

SUBSCRIPTIONS: dict[str, Subscription] = {
    "tier.changed": on_tier_changed,
    "points.earned": on_balance_changed,
    "points.spent": on_balance_changed,
    "points.expired": on_balance_changed,
    "points.adjusted": on_balance_changed,
    "post.published": on_member_acted,
    "comment.created": on_member_acted,
    "reaction.added": on_member_acted,
    "post.shared": on_member_acted,
    "poll.voted": on_member_acted,
    "quiz.answered": on_member_acted,
    "survey.answered": on_member_acted,
    "campaign.checked_in": on_member_acted,
}
