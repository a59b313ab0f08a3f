"""Product trial: members apply with answers; operators (or the earliest-first rule at
settlement) select up to ``slots``; the selected are told (``trial.selected``) and asked
for a review post, which completes their participation when content publishes it.
Settlement pays the optional ``review_reward`` to every selected member who reviewed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.campaigns.errors import (
    InvalidApplication,
    InvalidTransition,
    NoSlotsLeft,
    ParticipantNotFound,
)
from services.campaigns.events import emit
from services.campaigns.grants import pay
from services.campaigns.models import Campaign, Participant
from services.campaigns.repository import CampaignRepository, ParticipantRepository
from services.campaigns.schemas import TrialRules
from shared.events.contracts.campaigns import CampaignCompleted, TrialSelected


async def apply(
    session: AsyncSession, campaign: Campaign, participant: Participant, answers: list[str] | None
) -> None:
    rules = TrialRules.model_validate(campaign.rules)
    given = answers or []
    if len(given) != len(rules.questions):
        raise InvalidApplication(
            f"The trial asks {len(rules.questions)} questions; {len(given)} answers given",
            field="answers",
        )
    participant.answers = given
    await session.flush()


async def _selected(session: AsyncSession, campaign_id: str) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(Participant)
        .where(Participant.campaign_id == campaign_id, Participant.selected_at.is_not(None))
    )
    return count or 0


async def _mark(
    session: AsyncSession, campaign: Campaign, participant: Participant, now: datetime
) -> None:
    rules = TrialRules.model_validate(campaign.rules)
    participant.selected_at = now
    await session.flush()
    await emit(
        session,
        TrialSelected(
            campaign_id=campaign.id,
            community_id=campaign.community_id,
            member_id=participant.member_id,
            review_due_at=now + timedelta(days=rules.review_days),
            selected_at=now,
        ),
        participant.member_id,
    )


async def select_member(
    session: AsyncSession, campaign_id: str, member_id: str, now: datetime
) -> Participant:
    # The campaign row lock serialises selections, so the slots hold.
    campaign = await CampaignRepository(session).get(campaign_id, lock=True)
    assert campaign is not None
    if campaign.status not in ("active", "ended", "settled"):
        raise InvalidTransition(f"A {campaign.status} trial selects nobody")
    participant = await ParticipantRepository(session).get(campaign.id, member_id, lock=True)
    if participant is None:
        raise ParticipantNotFound(f"Member {member_id} did not apply")
    if participant.selected_at is not None:
        return participant
    if await _selected(session, campaign.id) >= TrialRules.model_validate(campaign.rules).slots:
        raise NoSlotsLeft("Every trial slot is taken")
    await _mark(session, campaign, participant, now)
    return participant


async def settle(session: AsyncSession, campaign: Campaign, now: datetime) -> None:
    rules = TrialRules.model_validate(campaign.rules)
    await _fill_free_slots(session, campaign, rules, now)
    if rules.review_reward is None:
        return
    reviewers = (
        await session.scalars(
            select(Participant.member_id)
            .where(
                Participant.campaign_id == campaign.id,
                Participant.selected_at.is_not(None),
                Participant.completed_at.is_not(None),
            )
            .order_by(Participant.completed_at, Participant.member_id)
        )
    ).all()
    # Earliest reviewers are paid first when the budget runs out.
    reward = rules.review_reward.model_dump()
    for member_id in reviewers:
        await pay(session, campaign, member_id, reward, "trial-review", now)


async def _fill_free_slots(
    session: AsyncSession, campaign: Campaign, rules: TrialRules, now: datetime
) -> None:
    free = rules.slots - await _selected(session, campaign.id)
    if rules.auto_select != "earliest" or free <= 0:
        return
    waiting = (
        await session.scalars(
            select(Participant)
            .where(Participant.campaign_id == campaign.id, Participant.selected_at.is_(None))
            .order_by(Participant.joined_at, Participant.member_id)
            .limit(free)
        )
    ).all()
    for participant in waiting:
        await _mark(session, campaign, participant, now)


async def reviewed(
    session: AsyncSession, community_id: str, author_id: str, published_at: datetime
) -> None:
    """A post by a selected member in the trial's community is their review."""
    waiting = (
        await session.scalars(
            select(Participant)
            .join(Campaign, Campaign.id == Participant.campaign_id)
            .where(
                Campaign.type == "trial",
                Campaign.community_id == community_id,
                Participant.member_id == author_id,
                Participant.selected_at.is_not(None),
                Participant.selected_at <= published_at,
                Participant.completed_at.is_(None),
            )
        )
    ).all()
    for participant in waiting:
        participant.completed_at = published_at
        await emit(
            session,
            CampaignCompleted(
                campaign_id=participant.campaign_id,
                member_id=author_id,
                completed_at=published_at,
            ),
            author_id,
        )
