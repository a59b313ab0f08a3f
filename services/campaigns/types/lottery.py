"""Lottery with a verifiable, weighted draw, and entries that are free, bought or earned.

Entries (``rules.entry``):
- ``free``: one ticket per entry.
- ``points``: an entry buys ``tickets`` at ``points_per_ticket``, spent in rewards.
- ``checkins``: every check-in of the member in the linked check-in challenge earns a
  ticket; an entry turns the check-ins not yet turned into tickets (at most
  ``max_tickets_per_entry``) into one entry holding that many tickets.

Paying with points crosses two databases, so it runs as a small saga keyed by the entry id
(rather than an event round trip, which would need rewards to hold points for us and
answer by event, and would leave the member without an answer to their request):
1. the entry is written ``pending`` and committed: the intent survives a crash, and it
   counts against the per-member limit, but not in any draw;
2. rewards is asked to spend, idempotently (``rewards_client``: the same key debits once);
3. a debit confirms the entry (score, ``campaign.entry_submitted``); a refusal deletes it
   and answers 409 ``insufficient-points``; no answer leaves it pending and answers 503.
   ``retry_pending`` (a scheduled job) asks again for entries left pending, with the same
   key, so each ends confirmed (points spent) or deleted (nothing spent), never half.
A client's ``Idempotency-Key`` names the entry too, so a retried request resumes the same
entry instead of buying a second one. The draw refuses to run while entries are pending.

The draw: at launch the campaign commits to ``sha256(seed)``; the draw reveals ``seed``.
Winners are a pure function of the seed and the published (entry id, tickets) list, see
``ALGORITHM``: ticket ``i`` of an entry is ``sha256(f"{seed}:{entry_id}:{i}")``, an entry
ranks by its lowest ticket, the first ``winners`` entries win. Ranking by the lowest of
``t`` uniform tickets draws entries in proportion to their tickets, without replacement.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.campaigns.errors import (
    AlreadyDrawn,
    EntriesPending,
    InsufficientPoints,
    InvalidApplication,
    InvalidTransition,
    NoTicketsEarned,
    RewardsUnavailable,
)
from services.campaigns.events import emit
from services.campaigns.grants import pay
from services.campaigns.models import Campaign, Checkin, Draw, Entry, Participant
from services.campaigns.repository import ParticipantRepository, changed
from services.campaigns.rewards_client import RewardsClient, Spend
from services.campaigns.schemas import DrawEntry, DrawRead, LotteryRules
from services.campaigns.types.entries import check_limit, new_entry, submitted
from shared.db import conflict_insert
from shared.events.contracts.campaigns import CampaignWinnerSelected, LotteryDrawPublished
from shared.scheduler import claim

ALGORITHM = (
    "sha256-tickets-v2: ticket i (0 <= i < tickets) of an entry is "
    "sha256(f'{seed}:{entry_id}:{i}') in hex; entries ordered by (lowest ticket, entry_id); "
    "the first N win"
)
ENTRY_NAMESPACE = uuid.UUID("0b8e4a4e-3f8c-4f7e-9d6b-1c2a5e7f9a10")


def winners_of(seed: str, entries: Sequence[tuple[str, int]], count: int) -> list[str]:
    """``entries`` are (entry id, tickets)."""

    def best(entry_id: str, tickets: int) -> str:
        return min(
            hashlib.sha256(f"{seed}:{entry_id}:{i}".encode()).hexdigest() for i in range(tickets)
        )

    ranked = sorted((best(entry_id, tickets), entry_id) for entry_id, tickets in entries)
    return [entry_id for _, entry_id in ranked[:count]]


# --- entering ---------------------------------------------------------------------------------


async def enter(
    session: AsyncSession,
    campaign: Campaign,
    participant: Participant,
    tickets: int | None,
    now: datetime,
) -> Entry:
    """A free entry, or one earned by check-ins. Caller holds the participant's row lock."""
    rules = LotteryRules.model_validate(campaign.rules)
    if tickets is not None and rules.entry != "points":
        raise InvalidApplication("Only lotteries priced in points sell tickets", field="tickets")
    await check_limit(session, campaign, participant.member_id, rules.max_entries_per_member)
    count, source = 1, "free"
    if rules.entry == "checkins":
        count, source = (
            await _earned_tickets(session, campaign, rules, participant.member_id),
            "checkins",
        )
    entry = new_entry(campaign, participant.member_id, now, tickets=count, source=source)
    session.add(entry)
    await session.flush()
    await _counted(session, entry)
    return entry


async def _earned_tickets(
    session: AsyncSession, campaign: Campaign, rules: LotteryRules, member_id: str
) -> int:
    checkins = await session.scalar(
        select(func.count())
        .select_from(Checkin)
        .where(Checkin.campaign_id == rules.checkin_campaign_id, Checkin.member_id == member_id)
    )
    converted = await session.scalar(
        select(func.coalesce(func.sum(Entry.tickets), 0)).where(
            Entry.campaign_id == campaign.id,
            Entry.member_id == member_id,
            Entry.source == "checkins",
        )
    )
    left = int(checkins or 0) - int(converted or 0)
    if left <= 0:
        raise NoTicketsEarned(
            f"Member {member_id} has turned all {checkins or 0} check-ins into tickets"
        )
    return min(left, rules.max_tickets_per_entry)


async def _counted(session: AsyncSession, entry: Entry) -> None:
    await ParticipantRepository(session).add_score(
        entry.campaign_id, entry.member_id, entry.tickets
    )
    await submitted(session, entry)


async def buy(
    session: AsyncSession,
    rewards: RewardsClient | None,
    campaign: Campaign,
    participant: Participant,
    tickets: int | None,
    request_key: str | None,
    now: datetime,
) -> Entry:
    """An entry priced in points: the saga of the module docstring, from the request."""
    rules = LotteryRules.model_validate(campaign.rules)
    count = tickets or 1
    if count > rules.max_tickets_per_entry:
        raise InvalidApplication(
            f"An entry buys at most {rules.max_tickets_per_entry} tickets", field="tickets"
        )
    if rewards is None:
        raise RewardsUnavailable("No rewards service is configured")
    entry_id = None
    if request_key is not None:
        name = f"{campaign.id}:{participant.member_id}:{request_key}"
        entry_id = str(uuid.uuid5(ENTRY_NAMESPACE, name))
    entry = await session.get(Entry, entry_id) if entry_id else None
    if entry is not None and entry.status == "confirmed":
        return entry
    if entry is None:
        await check_limit(session, campaign, participant.member_id, rules.max_entries_per_member)
        cost = count * (rules.points_per_ticket or 0)
        entry = new_entry(
            campaign,
            participant.member_id,
            now,
            entry_id=entry_id,
            tickets=count,
            source="points",
            status="pending",
            points_spent=cost,
        )
        session.add(entry)
        await session.flush()
        await session.commit()  # step 1: the intent is durable before any point moves
    outcome = await rewards.spend(
        entry.member_id, entry.points_spent or 0, key=_spend_key(entry), reason=_reason(entry)
    )
    await _resolve(session, entry, outcome)
    if outcome is Spend.REFUSED:
        await session.commit()  # the deletion stands although the request fails
        raise InsufficientPoints(
            f"Member {entry.member_id} cannot pay {entry.points_spent} points for this entry",
            required=entry.points_spent,
        )
    if outcome is Spend.UNKNOWN:
        raise RewardsUnavailable(
            f"Rewards did not confirm the spend; entry {entry.id} stays pending and is retried"
        )
    return entry


def _spend_key(entry: Entry) -> str:
    return f"lottery-entry:{entry.id}"


def _reason(entry: Entry) -> str:
    """Part of the spend's body, so it must be the same on every try."""
    return f"Lottery {entry.campaign_id}: entry {entry.id}, {entry.tickets} ticket(s)"


async def _resolve(session: AsyncSession, entry: Entry, outcome: Spend) -> bool:
    """Confirm or delete a pending entry after rewards answered; True when settled now.
    Conditional on ``pending``, so the request and the retry job never both act."""
    if outcome is Spend.DONE:
        confirmed = await session.execute(
            update(Entry)
            .where(Entry.id == entry.id, Entry.status == "pending")
            .values(status="confirmed")
            .execution_options(synchronize_session=False)
        )
        entry.status = "confirmed"
        if changed(confirmed) == 1:
            await _counted(session, entry)
        return True
    if outcome is Spend.REFUSED:
        await session.execute(delete(Entry).where(Entry.id == entry.id, Entry.status == "pending"))
        return True
    return False


async def retry_pending(
    session: AsyncSession, rewards: RewardsClient | None, older_than: datetime, limit: int
) -> int:
    """The reconciliation job: ask rewards again about entries left pending; how many
    settled (entries rewards still does not answer for are not counted, so a tick that
    only meets silence waits for the next interval)."""
    if rewards is None:
        return 0
    stmt = (
        select(Entry)
        .where(Entry.status == "pending", Entry.created_at <= older_than)
        .order_by(Entry.created_at)
        .limit(limit)
    )
    settled = 0
    for entry in (await session.scalars(claim(stmt))).all():
        outcome = await rewards.spend(
            entry.member_id, entry.points_spent or 0, key=_spend_key(entry), reason=_reason(entry)
        )
        settled += await _resolve(session, entry, outcome)
    return settled


# --- the draw ---------------------------------------------------------------------------------


async def _entries(session: AsyncSession, campaign_id: str) -> Sequence[Entry]:
    stmt = (
        select(Entry)
        .where(Entry.campaign_id == campaign_id, Entry.status == "confirmed")
        .order_by(Entry.id)
    )
    return (await session.scalars(stmt)).all()


async def draw(session: AsyncSession, campaign: Campaign, now: datetime) -> Draw:
    if campaign.status not in ("ended", "settled") or campaign.seed is None:
        raise InvalidTransition(f"A lottery draws once ended; this one is {campaign.status}")
    pending = await session.scalar(
        select(func.count())
        .select_from(Entry)
        .where(Entry.campaign_id == campaign.id, Entry.status == "pending")
    )
    if pending:
        raise EntriesPending(f"{pending} entries still wait on rewards; the draw waits for them")
    rules = LotteryRules.model_validate(campaign.rules)
    entries = await _entries(session, campaign.id)
    entry_ids = [e.id for e in entries]
    tickets = [e.tickets for e in entries]
    winners = winners_of(campaign.seed, list(zip(entry_ids, tickets, strict=True)), rules.winners)
    inserted = await session.execute(
        conflict_insert(session, Draw)
        .values(
            campaign_id=campaign.id,
            seed=campaign.seed,
            seed_hash=campaign.seed_hash,
            entry_ids=entry_ids,
            entry_tickets=tickets,
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
            entry_tickets=tickets,
            winner_entry_ids=winners,
            algorithm=ALGORITHM,
            drawn_at=now,
        ),
        campaign.id,
    )
    members = {e.id: e.member_id for e in entries}
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
    if done is not None:
        ids = done.entry_ids
        tickets = done.entry_tickets or [1] * len(ids)
    else:
        ids, tickets = [e.id for e in entries], [e.tickets for e in entries]
    return DrawRead(
        campaign_id=campaign.id,
        algorithm=ALGORITHM,
        seed_hash=campaign.seed_hash,
        seed=done.seed if done else None,
        winners=rules.winners,
        entries=[
            DrawEntry(entry_id=i, member_id=members[i], tickets=t)
            for i, t in zip(ids, tickets, strict=True)
        ],
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
