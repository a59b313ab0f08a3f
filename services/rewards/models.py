"""Rewards tables: the double-entry ledger, lots, rules, tiers, coupons, catalogue."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import NAMING_CONVENTION, BigId, UtcDateTime


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Account(Base):
    """A member's stored balance: always equal to the sum of its ledger lines (see audit)."""

    __tablename__ = "accounts"
    __table_args__ = (
        CheckConstraint("available >= 0", name="available_not_negative"),
        CheckConstraint("pending >= 0", name="pending_not_negative"),
    )

    member_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    available: Mapped[int] = mapped_column(Integer, default=0)
    pending: Mapped[int] = mapped_column(Integer, default=0)
    lifetime: Mapped[int] = mapped_column(Integer, default=0)
    tier_code: Mapped[str | None] = mapped_column(String(40))
    tier_since: Mapped[datetime | None] = mapped_column(UtcDateTime)
    tier_review_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class LedgerEntry(Base):
    """One posting of the journal; append-only. ``source`` makes a second posting impossible."""

    __tablename__ = "ledger_entries"
    __table_args__ = (Index("ix_ledger_entries_member_created", "member_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(36))
    kind: Mapped[str] = mapped_column(String(16))  # earn, release, spend, expire, adjust
    reason_code: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(500))
    amount: Mapped[int] = mapped_column(Integer)
    available_delta: Mapped[int] = mapped_column(Integer)
    pending_delta: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(300), unique=True)
    rule_id: Mapped[str | None] = mapped_column(String(36))
    operator_id: Mapped[str | None] = mapped_column(String(36))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


Index(
    "ix_ledger_entries_rule_usage",
    LedgerEntry.member_id,
    LedgerEntry.rule_id,
    LedgerEntry.occurred_at,
)


class LedgerLine(Base):
    """A leg of an entry; the legs of every entry sum to zero.

    Member legs name ``member_id`` and the bucket (``available``/``pending``);
    system legs have no member and name the system account (``earned``, ``spent``,
    ``expired``, ``adjustments``).
    """

    __tablename__ = "ledger_lines"
    __table_args__ = (Index("ix_ledger_lines_member_account", "member_id", "account"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    entry_id: Mapped[str] = mapped_column(ForeignKey("ledger_entries.id"), index=True)
    member_id: Mapped[str | None] = mapped_column(String(36))
    account: Mapped[str] = mapped_column(String(32))
    lot_id: Mapped[str | None] = mapped_column(String(36))
    amount: Mapped[int] = mapped_column(Integer)


class Lot(Base):
    """Points earned together, spent oldest-expiring first, expiring together."""

    __tablename__ = "lots"
    __table_args__ = (
        CheckConstraint("remaining >= 0", name="remaining_not_negative"),
        Index("ix_lots_member_status_expires", "member_id", "status", "expires_at"),
        Index("ix_lots_status_expires", "status", "expires_at"),
        Index("ix_lots_status_available_at", "status", "available_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(36))
    entry_id: Mapped[str] = mapped_column(String(36))
    amount: Mapped[int] = mapped_column(Integer)
    remaining: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # pending, available, expired
    available_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    reminded_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class EarningRule(Base):
    __tablename__ = "earning_rules"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    event_type: Mapped[str] = mapped_column(String(100), index=True)
    points: Mapped[int] = mapped_column(Integer)
    daily_cap: Mapped[int | None] = mapped_column(Integer)
    weekly_cap: Mapped[int | None] = mapped_column(Integer)
    community_id: Mapped[str | None] = mapped_column(String(36))
    starts_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    ends_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    tier_multipliers: Mapped[dict[str, Any]] = mapped_column(JSON)
    hold_h: Mapped[float | None] = mapped_column(Float)
    active: Mapped[bool] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Tier(Base):
    __tablename__ = "tiers"

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    threshold: Mapped[int] = mapped_column(Integer, unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class CouponTemplate(Base):
    __tablename__ = "coupon_templates"
    __table_args__ = (CheckConstraint("remaining_stock >= 0", name="stock_not_negative"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(16))  # percent_off, amount_off, free_gift, ...
    value: Mapped[int | None] = mapped_column(Integer)
    gift: Mapped[str | None] = mapped_column(String(200))
    valid_from: Mapped[datetime | None] = mapped_column(UtcDateTime)
    valid_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    total_stock: Mapped[int | None] = mapped_column(Integer)
    remaining_stock: Mapped[int | None] = mapped_column(Integer)
    per_member_limit: Mapped[int | None] = mapped_column(Integer)
    segment_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Coupon(Base):
    """A code: ``available`` (generated, not issued), ``issued`` or ``redeemed``."""

    __tablename__ = "coupons"
    __table_args__ = (
        Index("ix_coupons_template_status", "template_id", "status"),
        Index("ix_coupons_member_template", "member_id", "template_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    template_id: Mapped[str] = mapped_column(ForeignKey("coupon_templates.id"))
    status: Mapped[str] = mapped_column(String(16))
    member_id: Mapped[str | None] = mapped_column(String(36))
    campaign_id: Mapped[str | None] = mapped_column(String(36))
    source: Mapped[str | None] = mapped_column(String(300), unique=True)
    order_ref: Mapped[str | None] = mapped_column(String(120))
    issued_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    redeemed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class CatalogItem(Base):
    __tablename__ = "catalog_items"
    __table_args__ = (CheckConstraint("stock >= 0", name="stock_not_negative"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str | None] = mapped_column(String(2000))
    kind: Mapped[str] = mapped_column(String(16))  # physical, coupon, digital
    points_price: Mapped[int] = mapped_column(Integer)
    stock: Mapped[int | None] = mapped_column(Integer)
    coupon_template_id: Mapped[str | None] = mapped_column(String(36))
    active: Mapped[bool] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Redemption(Base):
    __tablename__ = "redemptions"
    __table_args__ = (Index("ix_redemptions_member_created", "member_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(36))
    item_id: Mapped[str] = mapped_column(ForeignKey("catalog_items.id"))
    item_kind: Mapped[str] = mapped_column(String(16))
    quantity: Mapped[int] = mapped_column(Integer)
    points: Mapped[int] = mapped_column(Integer)
    entry_id: Mapped[str | None] = mapped_column(String(36))
    coupon_code: Mapped[str | None] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(300), unique=True)
    # Personal data: dropped on ``member.erased``.
    shipping_address: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
