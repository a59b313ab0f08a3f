"""Coupons: templates, bulk code generation, issuing, validation, redemption, refund.

Codes are 12 characters from a 31-letter alphabet without look-alikes
(no 0/O, 1/I/L): about 59 random bits from ``secrets``, so unguessable.
Stock is a conditional ``UPDATE ... WHERE remaining_stock >= 1``; a code moves
``issued -> redeemed`` with a conditional UPDATE too, so it redeems once.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards import events
from services.rewards.errors import (
    CouponLimitReached,
    CouponNotFound,
    CouponNotRedeemable,
    CouponNotValid,
    CouponOutOfStock,
    TemplateNotFound,
)
from services.rewards.ledger import Ledger
from services.rewards.models import Coupon, CouponTemplate
from services.rewards.pagination import encode_cursor, page
from services.rewards.schemas import CouponTemplateCreate
from shared.auth import Principal
from shared.db import conflict_insert, utcnow
from shared.errors import Forbidden
from shared.events.contracts.rewards import CouponIssued, CouponRedeemed
from shared.scheduler import claim

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 12
_LIMIT = 256 - 256 % len(ALPHABET)  # rejection sampling keeps every letter equally likely
INSERT_CHUNK = 5000
UNISSUED, ISSUED, REDEEMED = "unissued", "issued", "redeemed"
REVOKED = "revoked"  # a campaign clawed back the grant that issued it


def new_codes(count: int) -> list[str]:
    codes: set[str] = set()
    while len(codes) < count:
        raw = secrets.token_bytes((count - len(codes)) * CODE_LENGTH * 2)
        letters = [ALPHABET[b % len(ALPHABET)] for b in raw if b < _LIMIT]
        for i in range(0, len(letters) - CODE_LENGTH + 1, CODE_LENGTH):
            codes.add("".join(letters[i : i + CODE_LENGTH]))
            if len(codes) == count:
                break
    return list(codes)


def normalise(code: str) -> str:
    return code.replace("-", "").replace(" ", "").upper()


def validity_problem(template: CouponTemplate, now: datetime) -> str | None:
    if template.valid_from and now < template.valid_from:
        return "not valid yet"
    if template.valid_until and now >= template.valid_until:
        return "expired"
    return None


class CouponService:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    async def create_template(
        self, session: AsyncSession, data: CouponTemplateCreate
    ) -> CouponTemplate:
        template = CouponTemplate(
            id=str(uuid.uuid4()),
            remaining_stock=data.total_stock,
            created_at=utcnow(),
            **data.model_dump(mode="python"),
        )
        template.kind = data.kind.value
        session.add(template)
        await session.flush()
        return template

    async def list_templates(
        self, session: AsyncSession, cursor: str | None, limit: int
    ) -> tuple[list[CouponTemplate], str | None]:
        stmt = page(
            select(CouponTemplate), CouponTemplate.created_at, CouponTemplate.id, cursor, limit
        )
        rows = list((await session.scalars(stmt)).all())
        if len(rows) > limit:
            rows = rows[:limit]
            return rows, encode_cursor(rows[-1].created_at, rows[-1].id)
        return rows, None

    async def get_template(self, session: AsyncSession, template_id: str) -> CouponTemplate:
        template = await session.get(CouponTemplate, template_id)
        if template is None:
            raise TemplateNotFound(f"No coupon template with id {template_id}")
        return template

    async def generate(self, session: AsyncSession, template_id: str, count: int) -> list[str]:
        """Bulk-insert ``count`` fresh unissued codes; collisions are topped up."""
        await self.get_template(session, template_id)
        now = utcnow()
        made: list[str] = []
        while len(made) < count:
            batch = new_codes(min(INSERT_CHUNK, count - len(made)))
            rows = [
                {
                    "id": str(uuid.uuid4()),
                    "code": code,
                    "template_id": template_id,
                    "status": UNISSUED,
                    "created_at": now,
                }
                for code in batch
            ]
            stmt = (
                conflict_insert(session, Coupon.__table__)  # type: ignore[arg-type]
                .on_conflict_do_nothing(index_elements=["code"])
                .returning(Coupon.__table__.c.code)
            )
            inserted = (await session.execute(stmt, rows)).scalars().all()
            made.extend(inserted)
        return made

    async def issue(
        self,
        session: AsyncSession,
        template_id: str,
        member_id: str,
        *,
        source: str | None = None,
        campaign_id: str | None = None,
    ) -> Coupon:
        """Give a member a code: per-member limit and stock checked under the account lock."""
        template = await self.get_template(session, template_id)
        now = utcnow()
        if template.valid_until and now >= template.valid_until:
            raise CouponNotValid("The coupon template has expired")
        # The member's account row doubles as a per-member mutex for the limit check.
        await self.ledger.lock_account(session, member_id)
        if source is not None:
            existing = await session.scalar(select(Coupon).where(Coupon.source == source))
            if existing is not None:
                return existing
        if template.per_member_limit is not None:
            held = await session.scalar(
                select(func.count())
                .select_from(Coupon)
                .where(Coupon.template_id == template_id, Coupon.member_id == member_id)
            )
            if (held or 0) >= template.per_member_limit:
                raise CouponLimitReached(
                    f"The member already holds {held} of at most {template.per_member_limit}"
                )
        if template.total_stock is not None:
            taken = await session.execute(
                update(CouponTemplate)
                .where(CouponTemplate.id == template_id, CouponTemplate.remaining_stock >= 1)
                .values(remaining_stock=CouponTemplate.remaining_stock - 1)
            )
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                raise CouponOutOfStock("No coupons of this template are left")
        values: dict[str, Any] = {
            "status": ISSUED,
            "member_id": member_id,
            "campaign_id": campaign_id,
            "source": source,
            "issued_at": now,
        }
        coupon_id = await self._claim_pooled_code(session, template_id, values)
        if coupon_id is None:
            coupon_id = str(uuid.uuid4())
            [code] = new_codes(1)
            await session.execute(
                insert(Coupon).values(
                    id=coupon_id, code=code, template_id=template_id, created_at=now, **values
                )
            )
        coupon = await session.get(Coupon, coupon_id, populate_existing=True)
        assert coupon is not None
        data = CouponIssued(
            coupon_id=coupon.id,
            template_id=template_id,
            member_id=member_id,
            campaign_id=campaign_id,
            valid_until=template.valid_until,
            issued_at=now,
        )
        await events.publish(session, data, subject=member_id)
        return coupon

    async def _claim_pooled_code(
        self, session: AsyncSession, template_id: str, values: dict[str, Any]
    ) -> str | None:
        for _ in range(5):
            candidate = await session.scalar(
                claim(
                    select(Coupon.id)
                    .where(Coupon.template_id == template_id, Coupon.status == UNISSUED)
                    .limit(1)
                )
            )
            if candidate is None:
                return None
            claimed = await session.execute(
                update(Coupon)
                .where(Coupon.id == candidate, Coupon.status == UNISSUED)
                .values(**values)
            )
            if claimed.rowcount == 1:  # type: ignore[attr-defined]
                return candidate
        return None

    async def get_by_code(self, session: AsyncSession, code: str) -> Coupon:
        coupon = await session.scalar(select(Coupon).where(Coupon.code == normalise(code)))
        if coupon is None:
            raise CouponNotFound("No coupon with this code")
        return coupon

    def ensure_may_use(self, principal: Principal, coupon: Coupon) -> None:
        if principal.role.value == "member" and coupon.member_id != principal.subject:
            raise Forbidden("This coupon belongs to another member")

    async def validate(
        self, session: AsyncSession, code: str, principal: Principal
    ) -> tuple[Coupon, CouponTemplate, str | None]:
        coupon = await self.get_by_code(session, code)
        self.ensure_may_use(principal, coupon)
        template = await self.get_template(session, coupon.template_id)
        reason = validity_problem(template, utcnow())
        if reason is None and coupon.status != ISSUED:
            reason = "already redeemed" if coupon.status == REDEEMED else "not issued"
        return coupon, template, reason

    async def redeem(
        self, session: AsyncSession, code: str, principal: Principal, order_ref: str | None
    ) -> Coupon:
        coupon, _, reason = await self.validate(session, code, principal)
        if reason == "expired" or reason == "not valid yet":
            raise CouponNotValid(f"The coupon is {reason}")
        now = utcnow()
        redeemed = await session.execute(
            update(Coupon)
            .where(Coupon.id == coupon.id, Coupon.status == ISSUED)
            .values(status=REDEEMED, redeemed_at=now, order_ref=order_ref)
        )
        if redeemed.rowcount != 1:  # type: ignore[attr-defined]
            raise CouponNotRedeemable("The coupon was already redeemed or never issued")
        await session.refresh(coupon)
        data = CouponRedeemed(
            coupon_id=coupon.id,
            template_id=coupon.template_id,
            member_id=coupon.member_id,
            campaign_id=coupon.campaign_id,
            order_ref=order_ref,
            redeemed_at=now,
        )
        await events.publish(session, data, subject=coupon.member_id or coupon.id)
        return coupon

    async def refund(self, session: AsyncSession, code: str) -> Coupon:
        """An order was refunded: the code becomes usable again (once more)."""
        coupon = await self.get_by_code(session, code)
        restored = await session.execute(
            update(Coupon)
            .where(Coupon.id == coupon.id, Coupon.status == REDEEMED)
            .values(status=ISSUED, redeemed_at=None, order_ref=None)
        )
        if restored.rowcount != 1:  # type: ignore[attr-defined]
            raise CouponNotRedeemable("Only a redeemed coupon can be returned")
        await session.refresh(coupon)
        return coupon
