"""Entries shared by lotteries, UGC contests and flash sales: per-member limits and the event."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.campaigns.errors import EntryLimitReached
from services.campaigns.events import emit
from services.campaigns.models import Campaign, Entry
from shared.events.contracts.campaigns import CampaignEntrySubmitted


async def check_limit(
    session: AsyncSession, campaign: Campaign, member_id: str, limit: int
) -> None:
    """Callers hold the participant's row lock, so the limit holds under concurrent requests.
    Pending entries count: they are promised until rewards says otherwise."""
    count = await session.scalar(
        select(func.count())
        .select_from(Entry)
        .where(Entry.campaign_id == campaign.id, Entry.member_id == member_id)
    )
    if (count or 0) >= limit:
        raise EntryLimitReached(f"Member {member_id} already has {limit} entries")


def new_entry(
    campaign: Campaign,
    member_id: str,
    now: datetime,
    *,
    entry_id: str | None = None,
    post_id: str | None = None,
    tickets: int = 1,
    source: str = "free",
    status: str = "confirmed",
    points_spent: int | None = None,
) -> Entry:
    return Entry(
        id=entry_id or str(uuid.uuid4()),
        campaign_id=campaign.id,
        member_id=member_id,
        post_id=post_id,
        votes=0,
        judge_score=None,
        created_at=now,
        tickets=tickets,
        source=source,
        status=status,
        points_spent=points_spent,
    )


async def submitted(session: AsyncSession, entry: Entry) -> None:
    """``campaign.entry_submitted``: only for entries that count (never for pending ones)."""
    await emit(
        session,
        CampaignEntrySubmitted(
            campaign_id=entry.campaign_id,
            entry_id=entry.id,
            member_id=entry.member_id,
            post_id=entry.post_id,
            tickets=entry.tickets,
            submitted_at=entry.created_at,
        ),
        entry.member_id,
    )


async def add_entry(
    session: AsyncSession,
    campaign: Campaign,
    member_id: str,
    limit: int,
    now: datetime,
    post_id: str | None = None,
) -> Entry:
    await check_limit(session, campaign, member_id, limit)
    entry = new_entry(campaign, member_id, now, post_id=post_id)
    session.add(entry)
    await session.flush()
    await submitted(session, entry)
    return entry
