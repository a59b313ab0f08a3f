"""Invite-a-friend referral, driven by members' events.

A referrer joins the campaign (eligibility is checked then); each ``member.referred`` for
a participating referrer inside the window opens a pending referral. ``member.referral_
activated`` within ``activation_window_days`` of the referral pays the referrer, up to
``per_referrer_cap`` and the budget. If the invitee is erased within ``hold_days`` of
activation, the grant is clawed back with ``campaign.reward_revoked``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.campaigns.grants import pay, revoke
from services.campaigns.models import Campaign, Participant, Referral
from services.campaigns.repository import ParticipantRepository
from services.campaigns.schemas import ReferralRules
from shared.db import conflict_insert


async def referred(
    session: AsyncSession, invitee_id: str, referrer_id: str, referred_at: datetime
) -> int:
    campaigns = (
        await session.scalars(
            select(Campaign)
            .join(
                Participant,
                (Participant.campaign_id == Campaign.id) & (Participant.member_id == referrer_id),
            )
            .where(
                Campaign.type == "referral",
                Campaign.status == "active",
                Campaign.starts_at <= referred_at,
                Campaign.ends_at > referred_at,
            )
        )
    ).all()
    for campaign in campaigns:
        rules = ReferralRules.model_validate(campaign.rules)
        await session.execute(
            conflict_insert(session, Referral)
            .values(
                campaign_id=campaign.id,
                invitee_id=invitee_id,
                referrer_id=referrer_id,
                status="pending",
                referred_at=referred_at,
                activate_by=referred_at + timedelta(days=rules.activation_window_days),
            )
            .on_conflict_do_nothing(index_elements=["campaign_id", "invitee_id"])
        )
    return len(campaigns)


async def activated(session: AsyncSession, invitee_id: str, activated_at: datetime) -> None:
    pending = (
        await session.scalars(
            select(Referral)
            .where(Referral.invitee_id == invitee_id, Referral.status == "pending")
            .with_for_update()
        )
    ).all()
    for referral in pending:
        campaign = await session.get(Campaign, referral.campaign_id)
        if campaign is None or campaign.status in ("settled", "cancelled"):
            referral.status = "expired"
            continue
        if activated_at > referral.activate_by:
            referral.status = "expired"
            continue
        rules = ReferralRules.model_validate(campaign.rules)
        # The referrer's row lock serialises activations of one referrer, so the cap holds.
        await ParticipantRepository(session).get(campaign.id, referral.referrer_id, lock=True)
        paid = await session.scalar(
            select(func.count())
            .select_from(Referral)
            .where(
                Referral.campaign_id == campaign.id,
                Referral.referrer_id == referral.referrer_id,
                Referral.status.in_(("rewarded", "clawed_back")),
            )
        )
        if (paid or 0) >= rules.per_referrer_cap:
            referral.status = "capped"
            continue
        gid = await pay(
            session,
            campaign,
            referral.referrer_id,
            rules.reward.model_dump(),
            f"referral:{invitee_id}",
            activated_at,
        )
        if gid is None:
            referral.status = "unfunded"
            continue
        referral.status = "rewarded"
        referral.activated_at = activated_at
        referral.hold_until = activated_at + timedelta(days=rules.hold_days)
        referral.grant_id = gid
        await ParticipantRepository(session).add_score(campaign.id, referral.referrer_id, 1)


async def invitee_erased(session: AsyncSession, invitee_id: str, erased_at: datetime) -> None:
    referrals = (
        await session.scalars(
            select(Referral)
            .where(Referral.invitee_id == invitee_id, Referral.status.in_(("pending", "rewarded")))
            .with_for_update()
        )
    ).all()
    for referral in referrals:
        if referral.status == "pending":
            referral.status = "expired"
            continue
        if referral.hold_until is None or erased_at >= referral.hold_until:
            continue
        if referral.grant_id is not None:
            await revoke(session, referral.grant_id, f"referral-clawback:{invitee_id}", erased_at)
        referral.status = "clawed_back"
        await session.execute(
            update(Participant)
            .where(
                Participant.campaign_id == referral.campaign_id,
                Participant.member_id == referral.referrer_id,
            )
            .values(score=Participant.score - 1)
            .execution_options(synchronize_session=False)
        )
