"""Campaigns tables, plus local replicas of what other services own (communities, posts)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Date, Float, Index, Integer, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import NAMING_CONVENTION, UtcDateTime


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(32))
    objective: Mapped[str] = mapped_column(String(32))
    community_id: Mapped[str] = mapped_column(String(36), index=True)
    segment_id: Mapped[str | None] = mapped_column(String(36))
    status: Mapped[str] = mapped_column(String(16), index=True)
    timezone: Mapped[str] = mapped_column(String(64))
    starts_at: Mapped[datetime] = mapped_column(UtcDateTime())
    ends_at: Mapped[datetime] = mapped_column(UtcDateTime())
    rules: Mapped[dict[str, Any]] = mapped_column(JSON)
    budget_points: Mapped[int | None] = mapped_column(Integer)
    budget_coupons: Mapped[int | None] = mapped_column(Integer)
    spent_points: Mapped[int] = mapped_column(Integer)
    spent_coupons: Mapped[int] = mapped_column(Integer)
    # Lotteries commit to sha256(seed) at launch and reveal the seed at the draw.
    seed: Mapped[str | None] = mapped_column(String(64))
    seed_hash: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    launched_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    settled_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    cancelled_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    __table_args__ = (Index("ix_campaigns_due", "status", "starts_at", "ends_at"),)


class Participant(Base):
    __tablename__ = "participants"

    campaign_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    joined_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # What the leaderboard ranks: check-ins, activated invitees, lottery entries, votes received.
    score: Mapped[float] = mapped_column(Float)
    streak: Mapped[int] = mapped_column(Integer)
    best_streak: Mapped[int] = mapped_column(Integer)
    total: Mapped[int] = mapped_column(Integer)
    last_day: Mapped[date | None] = mapped_column(Date)
    makeups_used: Mapped[int] = mapped_column(Integer)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    group_id: Mapped[str | None] = mapped_column(String(36), index=True)
    answers: Mapped[list[str] | None] = mapped_column(JSON)
    selected_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    __table_args__ = (Index("ix_participants_rank", "campaign_id", "score"),)


class BuyGroup(Base):
    """A group of a group buy: forms when ``size`` reaches the campaign's threshold."""

    __tablename__ = "buy_groups"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    campaign_id: Mapped[str] = mapped_column(String(36), index=True)
    leader_id: Mapped[str] = mapped_column(String(36))
    size: Mapped[int] = mapped_column(Integer)
    # open -> formed | failed
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class Checkin(Base):
    __tablename__ = "checkins"

    campaign_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # The primary key is what makes "one per local day" hold under concurrent requests.
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    note: Mapped[str | None] = mapped_column(Text)
    photo_url: Mapped[str | None] = mapped_column(String(500))
    makeup: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Grant(Base):
    """What the campaign asked rewards to pay, to whom; ``id`` is the event's ``grant_id``."""

    __tablename__ = "grants"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    campaign_id: Mapped[str] = mapped_column(String(36), index=True)
    member_id: Mapped[str] = mapped_column(String(36), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    points: Mapped[int | None] = mapped_column(Integer)
    coupon_template_id: Mapped[str | None] = mapped_column(String(36))
    reason: Mapped[str] = mapped_column(String(200))
    granted_at: Mapped[datetime] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class Referral(Base):
    __tablename__ = "referrals"

    campaign_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    invitee_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    referrer_id: Mapped[str] = mapped_column(String(36), index=True)
    # pending -> rewarded | capped | expired; rewarded -> clawed_back
    status: Mapped[str] = mapped_column(String(16))
    referred_at: Mapped[datetime] = mapped_column(UtcDateTime())
    activate_by: Mapped[datetime] = mapped_column(UtcDateTime())
    activated_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    hold_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    grant_id: Mapped[str | None] = mapped_column(String(36))


class Entry(Base):
    __tablename__ = "entries"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    campaign_id: Mapped[str] = mapped_column(String(36), index=True)
    member_id: Mapped[str] = mapped_column(String(36), index=True)
    post_id: Mapped[str | None] = mapped_column(String(36))
    votes: Mapped[int] = mapped_column(Integer)
    judge_score: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Lotteries: an entry's weight in the draw, how it was had (free, points, checkins), and
    # "pending" while its points are being spent in rewards (it is not in any draw then).
    tickets: Mapped[int] = mapped_column(Integer, server_default="1", default=1)
    source: Mapped[str] = mapped_column(String(16), server_default="free", default="free")
    status: Mapped[str] = mapped_column(
        String(16), index=True, server_default="confirmed", default="confirmed"
    )
    points_spent: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (Index("uq_entries_campaign_post", "campaign_id", "post_id", unique=True),)


class Vote(Base):
    __tablename__ = "votes"

    campaign_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    voter_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    entry_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    entry_author_id: Mapped[str] = mapped_column(String(36))
    day: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (Index("ix_votes_quota", "campaign_id", "voter_id", "day"),)


class VoteFlag(Base):
    """A pair of members who voted for each other's entries: a vote-ring signal for review."""

    __tablename__ = "vote_flags"

    campaign_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    member_a: Mapped[str] = mapped_column(String(36), primary_key=True)
    member_b: Mapped[str] = mapped_column(String(36), primary_key=True)
    flagged_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Draw(Base):
    __tablename__ = "draws"

    campaign_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    seed: Mapped[str] = mapped_column(String(64))
    seed_hash: Mapped[str] = mapped_column(String(64))
    entry_ids: Mapped[list[str]] = mapped_column(JSON)
    entry_tickets: Mapped[list[int] | None] = mapped_column(JSON)
    winner_entry_ids: Mapped[list[str]] = mapped_column(JSON)
    drawn_at: Mapped[datetime] = mapped_column(UtcDateTime())


# --- replicas of other services' data, fed by their events ---------------------------------


class CommunityReplica(Base):
    __tablename__ = "community_replicas"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    timezone: Mapped[str] = mapped_column(String(64))


class MembershipReplica(Base):
    __tablename__ = "membership_replicas"

    community_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))


class PostReplica(Base):
    __tablename__ = "post_replicas"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    community_id: Mapped[str] = mapped_column(String(36))
    author_id: Mapped[str] = mapped_column(String(36))
    published_at: Mapped[datetime] = mapped_column(UtcDateTime())
