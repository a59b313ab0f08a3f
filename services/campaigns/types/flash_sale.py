"""Flash sale / coupon drop: stock released at the start, per-member limit, never oversold.

The stock is the campaign's coupon budget, so a claim is one grant through the same
conditional UPDATE (``spent_coupons + 1 <= budget_coupons``) that keeps every budget:
concurrent claims serialise on the campaign row and the last coupon goes once.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.campaigns.errors import ClaimLimitReached, SoldOut
from services.campaigns.events import emit
from services.campaigns.grants import pay
from services.campaigns.models import Campaign, Entry, Participant
from services.campaigns.repository import ParticipantRepository
from services.campaigns.schemas import EntryRead, FlashSaleRules
from shared.events.contracts.campaigns import CampaignEntrySubmitted


async def claim(
    session: AsyncSession, campaign: Campaign, participant: Participant, now: datetime
) -> EntryRead:
    rules = FlashSaleRules.model_validate(campaign.rules)
    if campaign.budget_coupons is not None and campaign.spent_coupons >= campaign.budget_coupons:
        raise SoldOut(f"All {rules.stock} coupons are claimed")
    # The participant's row lock (held by the caller) keeps the per-member limit exact.
    claimed = await session.scalar(
        select(func.count())
        .select_from(Entry)
        .where(Entry.campaign_id == campaign.id, Entry.member_id == participant.member_id)
    )
    if (claimed or 0) >= rules.per_member_limit:
        raise ClaimLimitReached(f"At most {rules.per_member_limit} per member")
    entry = Entry(
        id=str(uuid.uuid4()),
        campaign_id=campaign.id,
        member_id=participant.member_id,
        post_id=None,
        votes=0,
        judge_score=None,
        created_at=now,
    )
    session.add(entry)
    await session.flush()
    await ParticipantRepository(session).add_score(campaign.id, participant.member_id, 1)
    await emit(
        session,
        CampaignEntrySubmitted(
            campaign_id=campaign.id,
            entry_id=entry.id,
            member_id=participant.member_id,
            submitted_at=now,
        ),
        participant.member_id,
    )
    # Last, so the campaign row (the stock) stays locked for as short a time as possible;
    # sold out here rolls back the entry written above with the rest of the request.
    reward = {"kind": "coupon", "coupon_template_id": rules.coupon_template_id}
    gid = await pay(session, campaign, participant.member_id, reward, f"flash:{entry.id}", now)
    if gid is None:
        raise SoldOut(f"All {rules.stock} coupons are claimed")
    read = EntryRead.model_validate(entry)
    read.grant_id = gid
    return read
