"""How each event moves the rollups: one small write per rollup, once per scope.

The consumer's inbox makes each event apply once; every write is also additive
or idempotent, so late and out-of-order events land in their own day and hour,
whatever arrives first. Everything is buffered and written in bulk when the batch
commits (see buffer.py); membership changes keep their order there, and an erasure
writes the buffer before it reads memberships.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics.buffer import buffer_of, flush
from services.analytics.models import ERASED_PREFIX, PLATFORM
from services.analytics.raw import ERASED_LATER
from services.analytics.repository import RollupRepository

# Weights of the contributor score (docs/metrics.md): what a member did ...
INITIATED_WEIGHTS: dict[str, float] = {
    "post.published": 5.0,
    "comment.created": 2.0,
    "post.shared": 3.0,
    "reaction.added": 0.5,
    "poll.voted": 1.0,
    "quiz.answered": 1.0,
    "survey.answered": 1.0,
    "campaign.checked_in": 1.0,
}
# ... and what their content received from others.
RECEIVED_WEIGHTS: dict[str, float] = {
    "comment.created": 1.0,
    "post.shared": 2.0,
    "reaction.added": 0.5,
}

# Campaign funnel steps in order; each campaign event type names the steps it proves.
CAMPAIGN_STEPS: tuple[str, ...] = (
    "reached",
    "joined",
    "active",
    "completed",
    "rewarded",
    "redeemed",
)
# "reached" is not an event: it is the campaign's audience (MetricsQueries.campaign_reached).
CAMPAIGN_STEP_EVENTS: dict[str, tuple[str, ...]] = {
    "campaign.joined": ("joined",),
    "campaign.checked_in": ("joined", "active"),
    "campaign.entry_submitted": ("joined", "active"),
    "campaign.voted": ("joined", "active"),
    "campaign.completed": ("completed",),
    "campaign.reward_granted": ("rewarded",),
    "coupon.redeemed": ("redeemed",),
}


def as_utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def scopes_for(community_id: str | None) -> list[str]:
    return [PLATFORM, community_id] if community_id else [PLATFORM]


class Ingest:
    """Turns facts into rollup deltas; the buffer writes them in bulk when the batch commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.repo = RollupRepository(session)
        self.buffer = buffer_of(session)

    def action(
        self,
        event_type: str,
        member_id: str,
        community_id: str | None,
        at: datetime,
        *,
        active: bool = True,
        post_author_id: str | None = None,
        counter: str | None = None,
        dimension: str | None = None,
        amount: int = 1,
    ) -> None:
        """Apply one member action to every rollup of every scope it belongs to."""
        at = as_utc(at)
        day = at.date()
        author = None if post_author_id == member_id else post_author_id  # self-credit: none
        initiated = INITIATED_WEIGHTS.get(event_type, 0.0)
        received = RECEIVED_WEIGHTS.get(event_type, 0.0) if author else 0.0
        buffer = self.buffer
        counters = buffer.counters
        # The hot path of ingest: the buffer's dicts are written here directly.
        hour = at.replace(minute=0, second=0, microsecond=0) if active else None
        for scope in (PLATFORM, community_id) if community_id else (PLATFORM,):
            if counter:
                counters[(scope, day, counter, "")] += amount
                if dimension is not None:
                    counters[(scope, day, counter, dimension)] += amount
            if hour is not None:
                counters[(scope, day, "actions", "")] += 1
                buffer.hourly[(scope, hour)] += 1
                buffer.active.add((scope, day, member_id))
            buffer.step(scope, event_type, member_id, at)
            if initiated:
                buffer.initiated[(scope, day, member_id)] += initiated
            if author and received:
                buffer.received[(scope, day, author)] += received
        buffer.applied(at)

    def campaign_steps(
        self, event_type: str, campaign_id: str, member_id: str, at: datetime
    ) -> None:
        for step in CAMPAIGN_STEP_EVENTS.get(event_type, ()):
            self.buffer.campaign_step(campaign_id, step, member_id, as_utc(at))

    def campaign_progress(
        self, event_type: str, campaign_id: str, member_id: str, at: datetime
    ) -> None:
        """A campaign event that only moves its funnel (no activity of its own to count)."""
        self.campaign_steps(event_type, campaign_id, member_id, at)
        self.buffer.applied(as_utc(at))

    async def registered(self, member_id: str, channel: str, at: datetime) -> None:
        at = as_utc(at)
        self.buffer.membership("join", PLATFORM, member_id, at.date(), channel)
        self.action("member.registered", member_id, None, at, active=False)

    async def joined_community(self, community_id: str, member_id: str, at: datetime) -> None:
        at = as_utc(at)
        self.buffer.membership("join", community_id, member_id, at.date())
        self.action("member.joined_community", member_id, community_id, at, active=False)

    async def left_community(self, community_id: str, member_id: str, at: datetime) -> None:
        at = as_utc(at)
        self.buffer.membership("leave", community_id, member_id, at.date())
        self.action("member.left_community", member_id, community_id, at, active=False)

    async def erased(self, member_id: str, at: datetime) -> None:
        at = as_utc(at)
        if member_id == ERASED_LATER:  # a repeated erasure, stored after the first one
            self.buffer.applied(at)
            return
        # Rows still buffered in this batch must exist before they can be re-keyed.
        await flush(self.session)
        self.buffer = buffer_of(self.session)
        scopes = await self.repo.scopes_of(member_id)
        if member_id.startswith(ERASED_PREFIX):
            # Replayed from the raw store by a rebuild: the rows already carry the surrogate,
            # and events stored after the erasure carry ERASED_LATER, so nothing is recorded.
            await self.repo.forget_staff(member_id)
            first = True
        else:
            first = await self.repo.erase(member_id, at)
        if first:
            for scope in scopes:
                self.buffer.counter(scope, at.date(), "erased")
        self.buffer.applied(at)

    async def campaign_target(
        self,
        campaign_id: str,
        community_id: str,
        starts_at: datetime,
        ends_at: datetime,
        segment_id: str | None = None,
        *,
        with_segment: bool,
        at: datetime,
    ) -> None:
        await self.repo.save_campaign_target(
            campaign_id,
            community_id,
            as_utc(starts_at),
            as_utc(ends_at),
            segment_id,
            with_segment=with_segment,
        )
        self.buffer.applied(as_utc(at))

    async def community_created(self, community_id: str, timezone: str, at: datetime) -> None:
        await self.repo.save_community(community_id, timezone, as_utc(at))
        self.buffer.applied(as_utc(at))

    async def post_published(
        self,
        post_id: str,
        community_id: str,
        author_id: str,
        author_kind: str,
        post_type: str,
        at: datetime,
    ) -> None:
        at = as_utc(at)
        if author_kind == "staff":
            await self.repo.mark_staff(author_id)
        self.buffer.post_community.setdefault(post_id, community_id)
        self.buffer.post_facts[post_id] = (author_id, author_kind, post_type, at)
        self.action("post.published", author_id, community_id, at, counter="posts")

    def interaction(
        self,
        event_type: str,
        post_id: str,
        community_id: str,
        member_id: str,
        at: datetime,
        *,
        post_author_id: str | None = None,
        post_counter: str,
        counter: str,
        dimension: str | None = None,
    ) -> None:
        self.buffer.post(post_id, community_id, post_counter)
        self.action(
            event_type,
            member_id,
            community_id,
            at,
            post_author_id=post_author_id,
            counter=counter,
            dimension=dimension,
        )

    def viewed(
        self, post_id: str, community_id: str, member_id: str, via_share: bool, at: datetime
    ) -> None:
        self.buffer.post(post_id, community_id, "views")
        self.buffer.viewers.add((post_id, member_id))
        self.action("post.viewed", member_id, community_id, at, active=False, counter="views")
        if via_share:
            self.buffer.post(post_id, community_id, "views_via_share")
            day = as_utc(at).date()
            for scope in scopes_for(community_id):
                self.buffer.counter(scope, day, "views_via_share")
