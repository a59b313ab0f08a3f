from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from shared.db import NAMING_CONVENTION, UtcDateTime


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Member(Base):
    """A member. Contact details are ciphertext plus a keyed lookup hash (see crypto.py).

    Every column a segment filters on is indexed; erasure blanks the personal
    columns and keeps the row, so ledgers elsewhere still point at a real id.
    """

    __tablename__ = "members"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    nickname: Mapped[str] = mapped_column(String(64))
    avatar_url: Mapped[str | None] = mapped_column(String(500))
    gender: Mapped[str | None] = mapped_column(String(16), index=True)
    birth_year: Mapped[int | None] = mapped_column(Integer, index=True)
    country: Mapped[str | None] = mapped_column(String(2))
    province: Mapped[str | None] = mapped_column(String(8))
    city: Mapped[str | None] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(32), index=True)
    email_cipher: Mapped[str | None] = mapped_column(Text)
    email_lookup: Mapped[str | None] = mapped_column(String(64), unique=True)
    phone_cipher: Mapped[str | None] = mapped_column(Text)
    phone_lookup: Mapped[str | None] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(200))
    marketing_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    consent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    consent_source: Mapped[str | None] = mapped_column(String(32))
    invite_code: Mapped[str | None] = mapped_column(String(16), unique=True)
    referrer_id: Mapped[str | None] = mapped_column(ForeignKey("members.id"), index=True)
    referred_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # A referral is activated by the invitee's first qualifying action before this time.
    referral_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    referral_activated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    tier: Mapped[str | None] = mapped_column(String(32), index=True)
    tier_name: Mapped[str | None] = mapped_column(String(64))
    points_balance: Mapped[int] = mapped_column(Integer, default=0, index=True)
    last_active_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    erased_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    interest_rows: Mapped[list[MemberInterest]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="MemberInterest.interest"
    )

    @property
    def interests(self) -> list[str]:
        return [row.interest for row in self.interest_rows]

    @property
    def has_password(self) -> bool:
        return self.password_hash is not None

    __table_args__ = (Index("ix_members_region", "country", "province", "city"),)


class MemberInterest(Base):
    __tablename__ = "member_interests"

    member_id: Mapped[str] = mapped_column(
        ForeignKey("members.id", ondelete="CASCADE"), primary_key=True
    )
    interest: Mapped[str] = mapped_column(String(32), primary_key=True, index=True)


class ReferralDay(Base):
    """How many invitees a referrer brought in on one UTC day: the cap is a conditional UPDATE."""

    __tablename__ = "referral_days"

    referrer_id: Mapped[str] = mapped_column(ForeignKey("members.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


class Community(Base):
    __tablename__ = "communities"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    logo_url: Mapped[str | None] = mapped_column(String(500))
    theme: Mapped[str | None] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(Text, default="")
    rules: Mapped[str] = mapped_column(Text, default="")
    visibility: Mapped[str] = mapped_column(String(16))
    timezone: Mapped[str] = mapped_column(String(64))
    owner_id: Mapped[str] = mapped_column(ForeignKey("members.id"), index=True)
    invite_code: Mapped[str] = mapped_column(String(16), unique=True)
    member_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Membership(Base):
    __tablename__ = "community_members"

    community_id: Mapped[str] = mapped_column(
        ForeignKey("communities.id", ondelete="CASCADE"), primary_key=True
    )
    member_id: Mapped[str] = mapped_column(ForeignKey("members.id"), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(16))
    joined_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Segment(Base):
    __tablename__ = "segments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    rules: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
