"""The rewards service: one object wiring the ledger, rules, tiers, coupons and catalogue."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards.catalog import CatalogService
from services.rewards.coupons import ISSUED, REVOKED, CouponService
from services.rewards.earning import EarningService
from services.rewards.errors import InvalidGrant
from services.rewards.ledger import Ledger, LedgerReader, LedgerSchedule, sql
from services.rewards.models import Coupon, LedgerEntry
from services.rewards.settings import RewardsSettings
from services.rewards.tiers import TierService
from shared.events.contracts.campaigns import CampaignRewardGranted, CampaignRewardRevoked


class RewardsService:
    def __init__(self, settings: RewardsSettings) -> None:
        self.settings = settings
        self.ledger = Ledger(settings)
        self.schedule = LedgerSchedule(self.ledger)
        self.reader = LedgerReader()
        self.tiers = TierService(settings)
        self.earning = EarningService(self.ledger, self.tiers)
        self.coupons = CouponService(self.ledger)
        self.catalog = CatalogService(self.ledger, self.coupons)

    async def grant(self, session: AsyncSession, data: CampaignRewardGranted) -> None:
        """Pay a campaign prize once per ``grant_id``, whatever the event id."""
        source = f"grant:{data.grant_id}"
        if data.kind == "points":
            if not data.points:
                raise InvalidGrant(f"grant {data.grant_id} of kind points has no points")
            posting = await self.ledger.earn(
                session,
                member_id=data.member_id,
                amount=data.points,
                reason_code="campaign_grant",
                reason=data.reason[:500],
                source=source,
                occurred_at=data.granted_at,
            )
            if posting is not None:
                await self.tiers.after_earning(session, data.member_id, posting.balance)
        elif data.kind == "coupon":
            if not data.coupon_template_id:
                raise InvalidGrant(f"grant {data.grant_id} of kind coupon names no template")
            await self.coupons.issue(
                session,
                data.coupon_template_id,
                data.member_id,
                source=source,
                campaign_id=data.campaign_id,
            )
        elif data.kind == "item":
            if not data.item_id:
                raise InvalidGrant(f"grant {data.grant_id} of kind item names no item")
            await self.catalog.redeem(
                session,
                member_id=data.member_id,
                item_id=data.item_id,
                quantity=1,
                source=source,
                note=data.reason[:500],
                free=True,
            )
        else:
            raise InvalidGrant(f"grant {data.grant_id} has unknown kind {data.kind!r}")

    async def revoke(self, session: AsyncSession, data: CampaignRewardRevoked) -> None:
        """Reverse a campaign grant once per ``grant_id``: debit its points, void its coupon.

        The ledger never goes negative: if the member already spent the points, the
        clawback takes what is available and the rest stays spent (the entry says so).
        Items already handed out are not taken back.
        """
        granted, source = f"grant:{data.grant_id}", f"revoke:{data.grant_id}"
        if data.kind == "coupon":
            await session.execute(
                update(Coupon)
                .where(Coupon.source == granted, Coupon.status == ISSUED)
                .values(status=REVOKED)
            )
            return
        if data.kind != "points":
            return
        done = await session.scalar(select(LedgerEntry.id).where(LedgerEntry.source == source))
        paid = await session.scalar(select(LedgerEntry.amount).where(LedgerEntry.source == granted))
        if done is not None or not paid:
            return
        available = await session.scalar(sql.AVAILABLE_BALANCE, {"b_member": data.member_id})
        take = min(paid, available or 0)
        if take > 0:
            shortfall = f" ({paid - take} already spent)" if take < paid else ""
            await self.ledger.adjust(
                session,
                member_id=data.member_id,
                amount=-take,
                reason=f"Clawback: {data.reason}{shortfall}"[:500],
                operator_id=data.campaign_id[:36],
                source=source,
            )

    async def erase_member(self, session: AsyncSession, member_id: str) -> None:
        await self.catalog.erase_member(session, member_id)
