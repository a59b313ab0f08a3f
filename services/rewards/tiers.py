"""Fan tiers: upgrade the moment points qualify, downgrade only at the review date.

The basis is a setting: ``lifetime`` points (the default) or points earned in a
``rolling`` window of ``tier_rolling_window_days``. Manual adjustments do not
count towards tiers; earned points (rules and campaign grants) do.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards import events
from services.rewards.errors import TierExists
from services.rewards.ledger import Balance
from services.rewards.models import Account, LedgerEntry, Tier
from services.rewards.schemas import TierCreate
from services.rewards.settings import RewardsSettings
from shared.db import utcnow
from shared.events.contracts.rewards import TierChanged
from shared.scheduler import claim

NO_TIER, NO_TIER_NAME = "none", "No tier"


@dataclass(frozen=True)
class TierStep:
    code: str
    name: str
    threshold: int


class TierService:
    def __init__(self, settings: RewardsSettings) -> None:
        self.settings = settings
        self._ladder: tuple[float, list[TierStep]] | None = None

    async def create(self, session: AsyncSession, data: TierCreate) -> Tier:
        taken = await session.scalar(
            select(Tier.code).where((Tier.code == data.code) | (Tier.threshold == data.threshold))
        )
        if taken is not None:
            raise TierExists("A tier with this code or threshold already exists")
        tier = Tier(code=data.code, name=data.name, threshold=data.threshold, created_at=utcnow())
        session.add(tier)
        try:
            await session.flush()
        except IntegrityError:
            raise TierExists("A tier with this code or threshold already exists") from None
        self._ladder = None
        return tier

    async def ladder(self, session: AsyncSession) -> list[TierStep]:
        """The tiers by threshold, cached for ``config_cache_s`` (read on every earning)."""
        now = time.monotonic()
        if self._ladder is not None and now - self._ladder[0] < self.settings.config_cache_s:
            return self._ladder[1]
        steps = [TierStep(t.code, t.name, t.threshold) for t in await self.list(session)]
        self._ladder = (now, steps)
        return steps

    async def list(self, session: AsyncSession) -> list[Tier]:
        return list((await session.scalars(select(Tier).order_by(Tier.threshold))).all())

    async def qualifying_points(self, session: AsyncSession, member_id: str, lifetime: int) -> int:
        if self.settings.tier_basis == "lifetime":
            return lifetime
        since = utcnow() - timedelta(days=self.settings.tier_rolling_window_days)
        total = await session.scalar(
            select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
                LedgerEntry.member_id == member_id,
                LedgerEntry.kind == "earn",
                LedgerEntry.created_at >= since,
            )
        )
        return int(total or 0)

    @staticmethod
    def tier_for(tiers: Sequence[TierStep], points: int) -> TierStep | None:
        reached = [tier for tier in tiers if tier.threshold <= points]
        return reached[-1] if reached else None

    @staticmethod
    def rank(tiers: Sequence[TierStep], code: str | None) -> int:
        for index, tier in enumerate(tiers):
            if tier.code == code:
                return index
        return -1

    async def after_earning(self, session: AsyncSession, member_id: str, balance: Balance) -> None:
        """Upgrade at once when the points now qualify for a higher tier (caller holds the lock)."""
        tiers = await self.ladder(session)
        if not tiers:
            return
        points = await self.qualifying_points(session, member_id, balance.lifetime)
        target = self.tier_for(tiers, points)
        if target is None or self.rank(tiers, target.code) <= self.rank(tiers, balance.tier_code):
            return
        await self._change(session, member_id, balance.tier_code, target, "upgrade", tiers)

    async def review_due(self, session: AsyncSession, limit: int) -> int:
        """At each member's review date: downgrade if the points no longer hold the tier."""
        now = utcnow()
        stmt = (
            select(Account)
            .where(Account.tier_review_at <= now)
            .order_by(Account.tier_review_at)
            .limit(limit)
        )
        due = [(a.member_id, a.tier_review_at) for a in (await session.scalars(claim(stmt))).all()]
        if not due:
            return 0
        tiers = await self.ladder(session)
        next_review = now + timedelta(days=self.settings.tier_review_days)
        handled = 0
        for member_id, review_at in due:
            moved = await session.execute(
                update(Account)
                .where(Account.member_id == member_id, Account.tier_review_at == review_at)
                .values(tier_review_at=next_review)
                .returning(Account.lifetime, Account.tier_code)
            )
            row = moved.first()
            if row is None:  # another replica reviewed it first
                continue
            handled += 1
            lifetime, current = row
            points = await self.qualifying_points(session, member_id, lifetime)
            target = self.tier_for(tiers, points)
            target_rank = self.rank(tiers, target.code if target else None)
            current_rank = self.rank(tiers, current)
            if target_rank < current_rank:
                await self._change(session, member_id, current, target, "downgrade", tiers)
            elif target_rank > current_rank and target is not None:
                await self._change(session, member_id, current, target, "upgrade", tiers)
        return handled

    async def _change(
        self,
        session: AsyncSession,
        member_id: str,
        previous: str | None,
        target: TierStep | None,
        direction: str,
        tiers: Sequence[TierStep],
    ) -> None:
        now = utcnow()
        review_at = now + timedelta(days=self.settings.tier_review_days) if target else None
        await session.execute(
            update(Account)
            .where(Account.member_id == member_id)
            .values(
                tier_code=target.code if target else None,
                tier_since=now,
                tier_review_at=review_at,
            )
        )
        data = TierChanged(
            member_id=member_id,
            previous_tier=previous,
            tier=target.code if target else NO_TIER,
            tier_name=target.name if target else NO_TIER_NAME,
            direction=direction,
            changed_at=now,
        )
        await events.publish(session, data, subject=member_id)
