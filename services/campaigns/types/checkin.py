"""Check-in challenge: one check-in per local day, streaks, make-up cards, milestones, completion.

Completion counts the best streak (``consecutive``) or every day checked in (``total``);
milestone rewards are paid when reached, the completion reward at settlement.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.campaigns.errors import AlreadyCheckedIn, InvalidMakeupDay, NoMakeupCards
from services.campaigns.events import emit
from services.campaigns.grants import pay
from services.campaigns.models import Campaign, Checkin, Participant
from services.campaigns.repository import changed
from services.campaigns.schemas import CheckinCreate, CheckinRead, CheckinRules
from shared.db import conflict_insert
from shared.events.contracts.campaigns import CampaignCheckedIn, CampaignCompleted


def local_day(campaign: Campaign, at: datetime) -> date:
    return at.astimezone(ZoneInfo(campaign.timezone)).date()


def streaks(days: Sequence[date]) -> tuple[int, int]:
    """(streak ending on the latest day, best streak) of sorted distinct days."""
    best = run = 0
    previous: date | None = None
    for day in days:
        run = run + 1 if previous is not None and day - previous == timedelta(days=1) else 1
        best = max(best, run)
        previous = day
    return run, best


def progress(rules: CheckinRules, participant: Participant) -> int:
    return participant.best_streak if rules.mode == "consecutive" else participant.total


async def check_in(
    session: AsyncSession,
    campaign: Campaign,
    participant: Participant,
    body: CheckinCreate,
    now: datetime,
) -> CheckinRead:
    rules = CheckinRules.model_validate(campaign.rules)
    today = local_day(campaign, now)
    day = today
    makeup = body.makeup_day is not None
    if body.makeup_day is not None:
        first = local_day(campaign, campaign.starts_at)
        if not first <= body.makeup_day < today:
            raise InvalidMakeupDay(
                f"makeup_day must be a past day of the campaign, from {first} to before {today}",
                field="makeup_day",
            )
        if participant.makeups_used >= rules.makeup_cards:
            raise NoMakeupCards(f"All {rules.makeup_cards} make-up cards are used")
        day = body.makeup_day
    inserted = await session.execute(
        conflict_insert(session, Checkin)
        .values(
            campaign_id=campaign.id,
            member_id=participant.member_id,
            day=day,
            note=body.note,
            photo_url=body.photo_url,
            makeup=makeup,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["campaign_id", "member_id", "day"])
    )
    if changed(inserted) != 1:
        raise AlreadyCheckedIn(f"Member {participant.member_id} already checked in on {day}")
    if makeup:
        # A filled gap can join two runs: recount from every day.
        days = (
            await session.scalars(
                select(Checkin.day)
                .where(
                    Checkin.campaign_id == campaign.id,
                    Checkin.member_id == participant.member_id,
                )
                .order_by(Checkin.day)
            )
        ).all()
        streak, best = streaks(days)
        participant.total = len(days)
        participant.last_day = days[-1]
    else:
        # Today is after every day checked in so far: the run grows or starts again.
        continues = participant.last_day == day - timedelta(days=1)
        streak = participant.streak + 1 if continues else 1
        best = max(participant.best_streak, streak)
        participant.total += 1
        participant.last_day = day
    participant.streak = streak
    participant.best_streak = best
    participant.score = float(participant.total)
    participant.makeups_used += 1 if makeup else 0
    await session.flush()
    await emit(
        session,
        CampaignCheckedIn(
            campaign_id=campaign.id,
            community_id=campaign.community_id,
            member_id=participant.member_id,
            day=day,
            streak=streak,
            total=participant.total,
            checked_in_at=now,
        ),
        participant.member_id,
    )
    reached = progress(rules, participant)
    for milestone in rules.milestones:
        if reached >= milestone.checkins:
            await pay(
                session,
                campaign,
                participant.member_id,
                milestone.reward.model_dump(),
                f"checkin-milestone:{milestone.checkins}",
                now,
            )
    completed = participant.completed_at is not None
    if not completed and reached >= rules.days_required:
        done = await session.execute(
            update(Participant)
            .where(
                Participant.campaign_id == campaign.id,
                Participant.member_id == participant.member_id,
                Participant.completed_at.is_(None),
            )
            .values(completed_at=now)
            .execution_options(synchronize_session=False)
        )
        if changed(done) == 1:
            completed = True
            await emit(
                session,
                CampaignCompleted(
                    campaign_id=campaign.id, member_id=participant.member_id, completed_at=now
                ),
                participant.member_id,
            )
    return CheckinRead(
        campaign_id=campaign.id,
        member_id=participant.member_id,
        day=day,
        makeup=makeup,
        streak=streak,
        best_streak=best,
        total=participant.total,
        completed=completed,
        makeups_left=rules.makeup_cards - participant.makeups_used,
    )


async def history(session: AsyncSession, campaign_id: str, member_id: str) -> Sequence[Checkin]:
    stmt = (
        select(Checkin)
        .where(Checkin.campaign_id == campaign_id, Checkin.member_id == member_id)
        .order_by(Checkin.day)
    )
    return (await session.scalars(stmt)).all()


async def settle(session: AsyncSession, campaign: Campaign, now: datetime) -> None:
    rules = CheckinRules.model_validate(campaign.rules)
    if rules.completion_reward is None:
        return
    finishers = (
        await session.scalars(
            select(Participant.member_id)
            .where(Participant.campaign_id == campaign.id, Participant.completed_at.is_not(None))
            .order_by(Participant.completed_at, Participant.member_id)
        )
    ).all()
    # First to finish are paid first when the budget runs out.
    reward = rules.completion_reward.model_dump()
    for member_id in finishers:
        await pay(session, campaign, member_id, reward, "checkin-completed", now)
