"""UGC contest: entries are the entrant's published posts; members vote; top N win.

Ranking score = (1 - w) * 100 * votes / (most votes of any entry) + w * judge_score,
with ``w = rules.judge_weight`` and judges scoring 0-100 (unscored counts as 0). With
``w = 0`` the score is the raw vote count. Ties go to more votes, then the earlier entry.

Vote-ring signal: when A votes for B's entry and B has voted for one of A's entries,
the pair is flagged for review (``GET /votes?flagged=true``); votes still count.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.campaigns.errors import (
    AlreadyEntered,
    AlreadyVoted,
    EntryNotFound,
    PostNotEligible,
    SelfVote,
    VoteQuotaExceeded,
)
from services.campaigns.events import emit
from services.campaigns.grants import pay
from services.campaigns.models import (
    Campaign,
    Entry,
    Participant,
    PostReplica,
    Vote,
    VoteFlag,
)
from services.campaigns.repository import ParticipantRepository, changed
from services.campaigns.schemas import EntryRead, UgcRules, VoteRead
from services.campaigns.types.checkin import local_day
from services.campaigns.types.entries import add_entry
from shared.db import conflict_insert
from shared.events.contracts.campaigns import CampaignVoted, CampaignWinnerSelected


async def enter(
    session: AsyncSession,
    campaign: Campaign,
    participant: Participant,
    post_id: str | None,
    now: datetime,
) -> Entry:
    if post_id is None:
        raise PostNotEligible("A UGC entry needs post_id", field="post_id")
    post = await session.get(PostReplica, post_id)
    if post is None:
        raise PostNotEligible(f"Post {post_id} is not published", field="post_id")
    if post.author_id != participant.member_id:
        raise PostNotEligible("Members enter their own posts only", field="post_id")
    if post.community_id != campaign.community_id:
        raise PostNotEligible(
            f"Post {post_id} is not in community {campaign.community_id}", field="post_id"
        )
    taken = await session.scalar(
        select(Entry.id).where(Entry.campaign_id == campaign.id, Entry.post_id == post_id)
    )
    if taken is not None:
        raise AlreadyEntered(f"Post {post_id} is already entry {taken}")
    rules = UgcRules.model_validate(campaign.rules)
    return await add_entry(
        session, campaign, participant.member_id, rules.max_entries_per_member, now, post_id
    )


async def vote(
    session: AsyncSession,
    campaign: Campaign,
    voter: Participant,
    entry_id: str,
    now: datetime,
) -> VoteRead:
    rules = UgcRules.model_validate(campaign.rules)
    entry = await session.get(Entry, entry_id)
    if entry is None or entry.campaign_id != campaign.id:
        raise EntryNotFound(f"Entry {entry_id} is not in campaign {campaign.id}")
    if entry.member_id == voter.member_id:
        raise SelfVote("Members cannot vote for their own entries", field="entry_id")
    day = local_day(campaign, now)
    # The voter's participant row is locked, so two concurrent votes cannot both pass the quota.
    used = await session.scalar(
        select(func.count())
        .select_from(Vote)
        .where(Vote.campaign_id == campaign.id, Vote.voter_id == voter.member_id, Vote.day == day)
    )
    if (used or 0) >= rules.votes_per_day:
        raise VoteQuotaExceeded(f"{rules.votes_per_day} votes per day; used them on {day}")
    inserted = await session.execute(
        conflict_insert(session, Vote)
        .values(
            campaign_id=campaign.id,
            voter_id=voter.member_id,
            entry_id=entry.id,
            entry_author_id=entry.member_id,
            day=day,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["campaign_id", "voter_id", "entry_id"])
    )
    if changed(inserted) != 1:
        raise AlreadyVoted(f"Member {voter.member_id} already voted for entry {entry.id}")
    await session.execute(
        update(Entry)
        .where(Entry.id == entry.id)
        .values(votes=Entry.votes + 1)
        .execution_options(synchronize_session=False)
    )
    await ParticipantRepository(session).add_score(campaign.id, entry.member_id, 1)
    returned = await session.scalar(
        select(Vote.entry_id).where(
            Vote.campaign_id == campaign.id,
            Vote.voter_id == entry.member_id,
            Vote.entry_author_id == voter.member_id,
        )
    )
    flagged = returned is not None
    if flagged:
        a, b = sorted((voter.member_id, entry.member_id))
        await session.execute(
            conflict_insert(session, VoteFlag)
            .values(campaign_id=campaign.id, member_a=a, member_b=b, flagged_at=now)
            .on_conflict_do_nothing(index_elements=["campaign_id", "member_a", "member_b"])
        )
    await emit(
        session,
        CampaignVoted(
            campaign_id=campaign.id,
            entry_id=entry.id,
            voter_id=voter.member_id,
            entry_author_id=entry.member_id,
            voted_at=now,
        ),
        voter.member_id,
    )
    return VoteRead(
        campaign_id=campaign.id,
        entry_id=entry.id,
        voter_id=voter.member_id,
        votes_left_today=rules.votes_per_day - (used or 0) - 1,
        flagged=flagged,
    )


async def judge(session: AsyncSession, campaign: Campaign, entry_id: str, score: float) -> Entry:
    entry = await session.get(Entry, entry_id)
    if entry is None or entry.campaign_id != campaign.id:
        raise EntryNotFound(f"Entry {entry_id} is not in campaign {campaign.id}")
    entry.judge_score = score
    await session.flush()
    return entry


async def ranked(session: AsyncSession, campaign: Campaign) -> list[EntryRead]:
    rules = UgcRules.model_validate(campaign.rules)
    stmt = (
        select(Entry)
        .where(Entry.campaign_id == campaign.id)
        .execution_options(populate_existing=True)
    )
    entries: Sequence[Entry] = (await session.scalars(stmt)).all()
    most = max((e.votes for e in entries), default=0)
    w = rules.judge_weight
    reads = []
    for e in entries:
        read = EntryRead.model_validate(e)
        if w == 0:
            read.score = float(e.votes)
        else:
            share = 100.0 * e.votes / most if most else 0.0
            read.score = round((1 - w) * share + w * (e.judge_score or 0.0), 6)
        reads.append(read)
    reads.sort(key=lambda r: (-(r.score or 0.0), -r.votes, r.created_at, r.id))
    return reads


async def flags(session: AsyncSession, campaign_id: str) -> Sequence[VoteFlag]:
    stmt = select(VoteFlag).where(VoteFlag.campaign_id == campaign_id).order_by(VoteFlag.flagged_at)
    return (await session.scalars(stmt)).all()


async def settle(session: AsyncSession, campaign: Campaign, now: datetime) -> None:
    rules = UgcRules.model_validate(campaign.rules)
    prize = rules.prize.model_dump()
    for rank, entry in enumerate((await ranked(session, campaign))[: rules.winners], start=1):
        await emit(
            session,
            CampaignWinnerSelected(
                campaign_id=campaign.id,
                member_id=entry.member_id,
                rank=rank,
                entry_id=entry.id,
                selected_at=now,
            ),
            entry.member_id,
        )
        await pay(session, campaign, entry.member_id, prize, f"ugc:{entry.id}", now)
