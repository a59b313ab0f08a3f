"""Quiz contest on a quiz post of the content service.

Members join (eligibility is checked then); their first ``quiz.answered`` on the contest's
post inside the window counts. Ranking: score, then the earlier answer; top N win.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.campaigns.events import emit
from services.campaigns.grants import pay
from services.campaigns.models import Campaign, Participant
from services.campaigns.repository import ParticipantRepository, changed
from services.campaigns.schemas import QuizRules
from shared.events.contracts.campaigns import CampaignCompleted, CampaignWinnerSelected


async def answered(
    session: AsyncSession, post_id: str, member_id: str, score: int, answered_at: datetime
) -> None:
    campaigns = (
        await session.scalars(
            select(Campaign)
            .join(
                Participant,
                (Participant.campaign_id == Campaign.id) & (Participant.member_id == member_id),
            )
            .where(
                Campaign.type == "quiz",
                Campaign.status == "active",
                Campaign.starts_at <= answered_at,
                Campaign.ends_at > answered_at,
                Participant.completed_at.is_(None),
            )
        )
    ).all()
    for campaign in campaigns:
        if QuizRules.model_validate(campaign.rules).post_id != post_id:
            continue
        first = await session.execute(
            update(Participant)
            .where(
                Participant.campaign_id == campaign.id,
                Participant.member_id == member_id,
                Participant.completed_at.is_(None),
            )
            .values(score=float(score), total=score, completed_at=answered_at)
            .execution_options(synchronize_session=False)
        )
        if changed(first) == 1:
            await emit(
                session,
                CampaignCompleted(
                    campaign_id=campaign.id, member_id=member_id, completed_at=answered_at
                ),
                member_id,
            )


async def settle(session: AsyncSession, campaign: Campaign, now: datetime) -> None:
    rules = QuizRules.model_validate(campaign.rules)
    ranked = await ParticipantRepository(session).top(campaign.id, rules.winners)
    prize = rules.prize.model_dump()
    for rank, participant in enumerate((p for p in ranked if p.completed_at is not None), start=1):
        await emit(
            session,
            CampaignWinnerSelected(
                campaign_id=campaign.id, member_id=participant.member_id, rank=rank, selected_at=now
            ),
            participant.member_id,
        )
        await pay(session, campaign, participant.member_id, prize, f"quiz:rank:{rank}", now)
