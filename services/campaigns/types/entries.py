"""Entries shared by lotteries and UGC contests: per-member limits and the entry event."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.campaigns.errors import EntryLimitReached
from services.campaigns.events import emit
from services.campaigns.models import Campaign, Entry
from shared.events.contracts.campaigns import CampaignEntrySubmitted


async def add_entry(
    session: AsyncSession,
    campaign: Campaign,
    member_id: str,
    limit: int,
    now: datetime,
    post_id: str | None = None,
) -> Entry:
    """Callers hold the participant's row lock, so the limit holds under concurrent requests."""
    count = await session.scalar(
        select(func.count())
        .select_from(Entry)
        .where(Entry.campaign_id == campaign.id, Entry.member_id == member_id)
    )
    if (count or 0) >= limit:
        raise EntryLimitReached(f"Member {member_id} already has {limit} entries")
    entry = Entry(
        id=str(uuid.uuid4()),
        campaign_id=campaign.id,
        member_id=member_id,
        post_id=post_id,
        votes=0,
        judge_score=None,
        created_at=now,
    )
    session.add(entry)
    await session.flush()
    await emit(
        session,
        CampaignEntrySubmitted(
            campaign_id=campaign.id,
            entry_id=entry.id,
            member_id=member_id,
            post_id=post_id,
            submitted_at=now,
        ),
        member_id,
    )
    return entry
