"""Queries shared by the campaign core and its types."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Row, Select, and_, bindparam, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.campaigns.models import (
    Campaign,
    CommunityReplica,
    Grant,
    MembershipReplica,
    Participant,
)
from shared.db import conflict_insert


def changed(result: Any) -> int:
    """Rows a conditional UPDATE/DELETE touched: how exactly-once is proven."""
    return int(cast(CursorResult[Any], result).rowcount)


# Hot statements are built once with bound parameters: building one and its cache key on
# every request cost more than running it.
CAMPAIGN = (
    select(Campaign)
    .where(Campaign.id == bindparam("campaign"))
    .execution_options(populate_existing=True)
)
CAMPAIGN_LOCKED = CAMPAIGN.with_for_update()
TOP = (
    select(
        Participant.member_id,
        Participant.score,
        Participant.streak,
        Participant.total,
        Participant.completed_at,
    )
    .where(Participant.campaign_id == bindparam("campaign"))
    .order_by(
        Participant.score.desc(),
        Participant.total.desc(),
        # Earlier completion (quiz answer, last check-in needed) ranks first.
        Participant.completed_at.is_(None),
        Participant.completed_at,
        Participant.joined_at,
        Participant.member_id,
    )
    .limit(bindparam("limit"))
)

# member_id, score, streak, total, completed_at
Leader = Row[str, float, int, int, datetime | None]


class CampaignRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, campaign_id: str, *, lock: bool = False) -> Campaign | None:
        stmt = CAMPAIGN_LOCKED if lock else CAMPAIGN
        return (await self.session.scalars(stmt, {"campaign": campaign_id})).first()

    async def page(
        self, filters: Sequence[Any], after: str | None, limit: int
    ) -> Sequence[Campaign]:
        stmt = select(Campaign).where(*filters)
        if after is not None:
            stmt = stmt.where(Campaign.id > after)
        return (await self.session.scalars(stmt.order_by(Campaign.id).limit(limit))).all()

    def due(self, now: datetime, limit: int) -> Select[Any]:
        return (
            select(Campaign)
            .where(
                or_(
                    and_(Campaign.status == "scheduled", Campaign.starts_at <= now),
                    and_(Campaign.status == "active", Campaign.ends_at <= now),
                )
            )
            .order_by(Campaign.starts_at)
            .limit(limit)
        )

    async def move(self, campaign_id: str, from_: str, to: str, **values: Any) -> bool:
        """The conditional status UPDATE: True only for the one caller that moved it."""
        result = await self.session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id, Campaign.status == from_)
            .values(status=to, **values)
            .execution_options(synchronize_session=False)
        )
        return changed(result) == 1

    async def edit(self, campaign_id: str, statuses: Sequence[str], **values: Any) -> bool:
        """Update fields while the campaign is still in one of ``statuses``."""
        if not values:
            return True
        result = await self.session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id, Campaign.status.in_(statuses))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return changed(result) == 1

    async def spend(self, campaign_id: str, points: int, coupons: int) -> bool:
        """Take from the budget only while it lasts; False when the cap would be passed."""
        stmt = update(Campaign).where(Campaign.id == campaign_id)
        if points:
            stmt = stmt.where(
                or_(
                    Campaign.budget_points.is_(None),
                    Campaign.spent_points + points <= Campaign.budget_points,
                )
            )
        if coupons:
            stmt = stmt.where(
                or_(
                    Campaign.budget_coupons.is_(None),
                    Campaign.spent_coupons + coupons <= Campaign.budget_coupons,
                )
            )
        stmt = stmt.values(
            spent_points=Campaign.spent_points + points,
            spent_coupons=Campaign.spent_coupons + coupons,
        ).execution_options(synchronize_session=False)
        return changed(await self.session.execute(stmt)) == 1

    async def timezone_of(self, community_id: str) -> str | None:
        replica = await self.session.get(CommunityReplica, community_id)
        return replica.timezone if replica else None


class ParticipantRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(
        self, campaign_id: str, member_id: str, *, lock: bool = False
    ) -> Participant | None:
        stmt = select(Participant).where(
            Participant.campaign_id == campaign_id, Participant.member_id == member_id
        )
        if lock:
            stmt = stmt.with_for_update()
        stmt = stmt.execution_options(populate_existing=True)
        return (await self.session.scalars(stmt)).first()

    async def add(self, campaign_id: str, member_id: str, at: datetime) -> bool:
        """Insert the participant unless it exists; True when this call created it."""
        stmt = (
            conflict_insert(self.session, Participant)
            .values(
                campaign_id=campaign_id,
                member_id=member_id,
                joined_at=at,
                score=0.0,
                streak=0,
                best_streak=0,
                total=0,
                makeups_used=0,
            )
            .on_conflict_do_nothing(index_elements=["campaign_id", "member_id"])
        )
        return changed(await self.session.execute(stmt)) == 1

    async def add_score(self, campaign_id: str, member_id: str, delta: float) -> None:
        await self.session.execute(
            update(Participant)
            .where(Participant.campaign_id == campaign_id, Participant.member_id == member_id)
            .values(score=Participant.score + delta)
            .execution_options(synchronize_session=False)
        )

    async def page(self, campaign_id: str, after: str | None, limit: int) -> Sequence[Participant]:
        stmt = select(Participant).where(Participant.campaign_id == campaign_id)
        if after is not None:
            stmt = stmt.where(Participant.member_id > after)
        return (await self.session.scalars(stmt.order_by(Participant.member_id).limit(limit))).all()

    async def top(self, campaign_id: str, limit: int) -> Sequence[Leader]:
        """The leaders: member id, score, streak, total and completion time, best first."""
        return (await self.session.execute(TOP, {"campaign": campaign_id, "limit": limit})).all()


class GrantRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, grant: dict[str, Any]) -> bool:
        stmt = (
            conflict_insert(self.session, Grant)
            .values(**grant)
            .on_conflict_do_nothing(index_elements=["id"])
        )
        return changed(await self.session.execute(stmt)) == 1

    async def remove(self, grant_id: str) -> None:
        await self.session.execute(delete(Grant).where(Grant.id == grant_id))

    async def of_campaign(self, campaign_id: str) -> Sequence[Grant]:
        stmt = select(Grant).where(Grant.campaign_id == campaign_id).order_by(Grant.granted_at)
        return (await self.session.scalars(stmt)).all()


class ReplicaRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def role(self, community_id: str, member_id: str) -> str | None:
        found = await self.session.get(MembershipReplica, (community_id, member_id))
        return found.role if found else None
