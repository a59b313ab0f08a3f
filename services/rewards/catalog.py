"""The reward catalogue and redemptions: stock and points move together or not at all.

Lock order, the same everywhere so PostgreSQL never deadlocks: the member's account,
then the catalogue item, then a coupon template.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards import events
from services.rewards.coupons import CouponService
from services.rewards.errors import (
    DuplicateSource,
    ItemNotFound,
    ItemOutOfStock,
    TemplateNotFound,
)
from services.rewards.ledger import Ledger
from services.rewards.models import CatalogItem, CouponTemplate, Redemption
from services.rewards.pagination import encode_cursor, page
from services.rewards.schemas import CatalogItemCreate, ItemKind
from shared.db import utcnow
from shared.events.contracts.rewards import RewardRedeemed
from shared.events.registry import EventData


class CatalogService:
    def __init__(self, ledger: Ledger, coupons: CouponService) -> None:
        self.ledger = ledger
        self.coupons = coupons

    async def create_item(self, session: AsyncSession, data: CatalogItemCreate) -> CatalogItem:
        template_id = data.coupon_template_id
        if template_id is not None and await session.get(CouponTemplate, template_id) is None:
            raise TemplateNotFound(f"No coupon template with id {data.coupon_template_id}")
        item = CatalogItem(
            id=str(uuid.uuid4()),
            active=True,
            created_at=utcnow(),
            **data.model_dump(mode="python"),
        )
        item.kind = data.kind.value
        session.add(item)
        await session.flush()
        return item

    async def list_items(
        self, session: AsyncSession, cursor: str | None, limit: int, *, active_only: bool
    ) -> tuple[list[CatalogItem], str | None]:
        stmt = select(CatalogItem)
        if active_only:
            stmt = stmt.where(CatalogItem.active.is_(True))
        rows = list(
            (
                await session.scalars(
                    page(stmt, CatalogItem.created_at, CatalogItem.id, cursor, limit)
                )
            ).all()
        )
        if len(rows) > limit:
            rows = rows[:limit]
            return rows, encode_cursor(rows[-1].created_at, rows[-1].id)
        return rows, None

    async def get_item(self, session: AsyncSession, item_id: str) -> CatalogItem:
        item = await session.get(CatalogItem, item_id)
        if item is None:
            raise ItemNotFound(f"No catalogue item with id {item_id}")
        return item

    async def redeem(
        self,
        session: AsyncSession,
        *,
        member_id: str,
        item_id: str,
        quantity: int,
        source: str,
        shipping_address: str | None = None,
        note: str | None = None,
        free: bool = False,
    ) -> Redemption:
        """Take stock, spend the points, hand out the item; ``free`` for campaign prizes."""
        if free:  # campaign grants are redelivered under new event ids: pay once per grant
            existing = await session.scalar(select(Redemption).where(Redemption.source == source))
            if existing is not None:
                return existing
        outbox: list[tuple[EventData, str]] = []
        # Read, not locked: price and kind only. The stock is taken last, with a
        # conditional UPDATE, so a popular item's row is locked for the shortest time
        # and unlimited items are never locked at all.
        item = (
            await session.execute(
                select(
                    CatalogItem.points_price,
                    CatalogItem.kind,
                    CatalogItem.name,
                    CatalogItem.coupon_template_id,
                    CatalogItem.stock,
                    CatalogItem.active,
                ).where(CatalogItem.id == item_id)
            )
        ).first()
        if item is None or not item.active:
            raise ItemNotFound(f"No catalogue item with id {item_id} is offered")
        price, kind, name, template_id, stock, _ = item
        if stock is not None and stock < quantity:
            raise ItemOutOfStock(f"Only {stock} left of {name}", stock=stock)
        points = 0 if free else price * quantity
        entry_id = None
        if points:
            posting = await self.ledger.spend(
                session,
                member_id=member_id,
                amount=points,
                reason_code="redemption",
                reason=f"Redeemed {quantity} x {name}",
                source=f"redemption:{source}",
                outbox=outbox,
            )
            entry_id = posting.entry_id
        else:  # keep the lock order (account, item, template) for prizes too
            await self.ledger.lock_account(session, member_id)
        if stock is not None:
            await self._take_stock(session, item_id, quantity, name)
        coupon_code = None
        if kind == ItemKind.COUPON.value and template_id is not None:
            coupon = await self.coupons.issue(
                session, template_id, member_id, source=f"redemption:{source}"
            )
            coupon_code = coupon.code
        now = utcnow()
        redemption = Redemption(
            id=str(uuid.uuid4()),
            member_id=member_id,
            item_id=item_id,
            item_kind=kind,
            quantity=quantity,
            points=points,
            entry_id=entry_id,
            coupon_code=coupon_code,
            source=source,
            shipping_address=shipping_address,
            note=note,
            created_at=now,
        )
        session.add(redemption)
        try:
            await session.flush()
        except IntegrityError:  # the same source raced past the idempotency layer
            raise DuplicateSource("This redemption was already made") from None
        data = RewardRedeemed(
            redemption_id=redemption.id,
            member_id=member_id,
            item_id=item_id,
            item_kind=kind,
            points=points,
            quantity=quantity,
            redeemed_at=now,
        )
        outbox.append((data, member_id))
        await events.publish_many(session, outbox)
        return redemption

    async def _take_stock(
        self, session: AsyncSession, item_id: str, quantity: int, name: str
    ) -> None:
        taken = await session.execute(
            update(CatalogItem)
            .where(
                CatalogItem.id == item_id,
                CatalogItem.active.is_(True),
                CatalogItem.stock >= quantity,
            )
            .values(stock=CatalogItem.stock - quantity)
            .returning(CatalogItem.stock)
        )
        if taken.first() is None:
            left = await session.scalar(select(CatalogItem.stock).where(CatalogItem.id == item_id))
            raise ItemOutOfStock(f"Only {left} left of {name}", stock=left)

    async def list_redemptions(
        self, session: AsyncSession, member_id: str | None, cursor: str | None, limit: int
    ) -> tuple[list[Redemption], str | None]:
        stmt = select(Redemption)
        if member_id is not None:
            stmt = stmt.where(Redemption.member_id == member_id)
        rows = list(
            (
                await session.scalars(
                    page(stmt, Redemption.created_at, Redemption.id, cursor, limit)
                )
            ).all()
        )
        if len(rows) > limit:
            rows = rows[:limit]
            return rows, encode_cursor(rows[-1].created_at, rows[-1].id)
        return rows, None

    async def erase_member(self, session: AsyncSession, member_id: str) -> None:
        """Keep the ledger and the redemptions; drop what identifies the person."""
        await session.execute(
            update(Redemption)
            .where(Redemption.member_id == member_id)
            .values(shipping_address=None, note=None)
        )
