"""Lottery with a verifiable draw.

At launch the campaign commits to ``sha256(seed)``; at the draw it reveals ``seed``.
Winners are a pure function of the seed and the sorted entry ids (``ALGORITHM``):
each entry's ticket is ``sha256(f"{seed}:{entry_id}")`` in hex; entries ordered by
(ticket, entry_id); the first ``winners`` win, in that order. A member with several
entries holds several tickets. Anyone can recompute this from ``GET /draws``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.campaigns.errors import AlreadyDrawn, InvalidTransition
from services.campaigns.events import emit
from services.campaigns.grants import pay
from services.campaigns.models import Campaign, Draw, Entry, Participant
from services.campaigns.repository import ParticipantRepository, changed
from services.campaigns.schemas import DrawEntry, DrawRead, LotteryRules
from services.campaigns.types.entries import add_entry
from shared.db import conflict_insert
from shared.events.contracts.campaigns import CampaignWinnerSelected, LotteryDrawPublished

ALGORITHM = "sha256-ticket-v1: order entry_ids by sha256(f'{seed}:{entry_id}') hex; first N win"


def winners_of(seed: str, entry_ids: Sequence[str], count: int) -> list[str]:
    tickets = sorted(
        (hashlib.sha256(f"{seed}:{entry_id}".encode()).hexdigest(), entry_id)
        for entry_id in entry_ids
    )
    return [entry_id for _, entry_id in tickets[:count]]


async def enter(
    session: AsyncSession, campaign: Campaign, participant: Participant, now: datetime
) -> Entry:
    rules = LotteryRules.model_validate(campaign.rules)
    entry = await add_entry(
        session, campaign, participant.member_id, rules.max_entries_per_member, now
    )
    await ParticipantRepository(session).add_score(campaign.id, participant.member_id, 1)
    return entry


async def _entries(session: AsyncSession, campaign_id: str) -> Sequence[Entry]:
    stmt = select(Entry).where(Entry.campaign_id == campaign_id).order_by(Entry.id)
    return (await session.scalars(stmt)).all()


async def draw(session: AsyncSession, campaign: Campaign, now: datetime) -> Draw:
    if campaign.status not in ("ended", "settled") or campaign.seed is None:
        raise InvalidTransition(f"A lottery draws once ended; this one is {campaign.status}")
    rules = LotteryRules.model_validate(campaign.rules)
    entry_ids = [e.id for e in await _entries(session, campaign.id)]
    winners = winners_of(campaign.seed, entry_ids, rules.winners)
    inserted = await session.execute(
        conflict_insert(session, Draw)
        .values(
            campaign_id=campaign.id,
            seed=campaign.seed,
            seed_hash=campaign.seed_hash,
            entry_ids=entry_ids,
            winner_entry_ids=winners,
            drawn_at=now,
        )
        .on_conflict_do_nothing(index_elements=["campaign_id"])
    )
    if changed(inserted) != 1:
        raise AlreadyDrawn(f"Lottery {campaign.id} was already drawn")
    await emit(
        session,
        LotteryDrawPublished(
            campaign_id=campaign.id,
            seed=campaign.seed,
            seed_hash=campaign.seed_hash or "",
            entry_ids=entry_ids,
            winner_entry_ids=winners,
            algorithm=ALGORITHM,
            drawn_at=now,
        ),
        campaign.id,
    )
    members = {e.id: e.member_id for e in await _entries(session, campaign.id)}
    for rank, entry_id in enumerate(winners, start=1):
        await emit(
            session,
            CampaignWinnerSelected(
                campaign_id=campaign.id,
                member_id=members[entry_id],
                rank=rank,
                entry_id=entry_id,
                selected_at=now,
            ),
            members[entry_id],
        )
    found = await session.get(Draw, campaign.id)
    assert found is not None
    return found


async def view(session: AsyncSession, campaign: Campaign) -> DrawRead:
    rules = LotteryRules.model_validate(campaign.rules)
    done = await session.get(Draw, campaign.id)
    entries = await _entries(session, campaign.id)
    members = {e.id: e.member_id for e in entries}
    ids = done.entry_ids if done else [e.id for e in entries]
    return DrawRead(
        campaign_id=campaign.id,
        algorithm=ALGORITHM,
        seed_hash=campaign.seed_hash,
        seed=done.seed if done else None,
        winners=rules.winners,
        entries=[DrawEntry(entry_id=i, member_id=members[i]) for i in ids],
        winner_entry_ids=done.winner_entry_ids if done else [],
        drawn_at=done.drawn_at if done else None,
    )


async def settle(session: AsyncSession, campaign: Campaign, now: datetime) -> None:
    done = await session.get(Draw, campaign.id)
    if done is None:
        done = await draw(session, campaign, now)
    rules = LotteryRules.model_validate(campaign.rules)
    members = {e.id: e.member_id for e in await _entries(session, campaign.id)}
    prize = rules.prize.model_dump()
    for entry_id in done.winner_entry_ids:
        await pay(session, campaign, members[entry_id], prize, f"lottery:{entry_id}", now)
