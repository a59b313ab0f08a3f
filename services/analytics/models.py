"""Rollup tables: every read is a bounded, indexed range over these, never over raw events.

``scope`` is a community id, or ``""`` for the whole platform: each event writes
its rows once per scope it belongs to, so platform figures need no cross-community
distinct counts. Days are UTC days.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, Float, Index, Integer, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import NAMING_CONVENTION, UtcDateTime


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class DailyMemberGrowth(Base):
    """New members per UTC day; totals are sums over this table, never over raw events."""

    __tablename__ = "daily_member_growth"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    registered: Mapped[int] = mapped_column(Integer, default=0)


class DailyCounter(Base):
    """Additive counters per scope and day: ``metric`` (e.g. ``new_members``), ``dimension``
    (e.g. a channel; ``""`` for the total)."""

    __tablename__ = "daily_counters"

    scope: Mapped[str] = mapped_column(String(36), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    metric: Mapped[str] = mapped_column(String(40), primary_key=True)
    dimension: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


class MemberActivityDay(Base):
    """One row per member, scope and day the member did something (not merely viewed)."""

    __tablename__ = "member_activity_days"
    __table_args__ = (Index("ix_member_activity_days_member", "scope", "member_id", "day"),)

    scope: Mapped[str] = mapped_column(String(36), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    member_id: Mapped[str] = mapped_column(String(36), primary_key=True)


class ScopeMember(Base):
    """When a member joined a scope (registration for the platform, joining for a community)."""

    __tablename__ = "scope_members"
    __table_args__ = (Index("ix_scope_members_joined", "scope", "joined_on"),)

    scope: Mapped[str] = mapped_column(String(36), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    joined_on: Mapped[date] = mapped_column(Date)
    channel: Mapped[str] = mapped_column(String(64), default="")
    left_on: Mapped[date | None] = mapped_column(Date)


class MemberEventDay(Base):
    """The compact step table of funnels: first and last time per member, event type and day."""

    __tablename__ = "member_event_days"

    scope: Mapped[str] = mapped_column(String(36), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    member_id: Mapped[str] = mapped_column(String(36), primary_key=True, index=True)
    first_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_at: Mapped[datetime] = mapped_column(UtcDateTime)


class HourlyActivity(Base):
    """Actions per scope and UTC hour; the heatmap shifts them into the community's zone."""

    __tablename__ = "hourly_activity"

    scope: Mapped[str] = mapped_column(String(36), primary_key=True)
    hour_start: Mapped[datetime] = mapped_column(UtcDateTime, primary_key=True)
    actions: Mapped[int] = mapped_column(Integer, default=0)


class MemberScoreDay(Base):
    """Weighted actions a member initiated and interactions their content received, per day."""

    __tablename__ = "member_score_days"

    scope: Mapped[str] = mapped_column(String(36), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    member_id: Mapped[str] = mapped_column(String(36), primary_key=True, index=True)
    initiated: Mapped[float] = mapped_column(Float, default=0.0)
    received: Mapped[float] = mapped_column(Float, default=0.0)


class PostStats(Base):
    """Running totals per post; interaction events may arrive before ``post.published``."""

    __tablename__ = "post_stats"
    __table_args__ = (Index("ix_post_stats_community", "community_id", "published_at"),)

    post_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    community_id: Mapped[str] = mapped_column(String(36))
    author_id: Mapped[str | None] = mapped_column(String(36), index=True)
    author_kind: Mapped[str | None] = mapped_column(String(16))
    post_type: Mapped[str | None] = mapped_column(String(32))
    published_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)
    comments: Mapped[int] = mapped_column(Integer, default=0)
    reactions: Mapped[int] = mapped_column(Integer, default=0)
    shares: Mapped[int] = mapped_column(Integer, default=0)
    answers: Mapped[int] = mapped_column(Integer, default=0)
    views: Mapped[int] = mapped_column(Integer, default=0)
    views_via_share: Mapped[int] = mapped_column(Integer, default=0)
    reach: Mapped[int] = mapped_column(Integer, default=0)


class PostViewer(Base):
    """Who has viewed a post, so reach counts each viewer once."""

    __tablename__ = "post_viewers"

    post_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(36), primary_key=True, index=True)


class CampaignMemberStep(Base):
    """The first time a member reached a campaign funnel step."""

    __tablename__ = "campaign_member_steps"

    campaign_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    step: Mapped[str] = mapped_column(String(32), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(36), primary_key=True, index=True)
    first_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Community(Base):
    """What analytics needs to know of a community: its time zone."""

    __tablename__ = "communities"

    community_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    timezone: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class StaffMember(Base):
    """Authors seen publishing as staff; excluded from contributor rankings."""

    __tablename__ = "staff_members"

    member_id: Mapped[str] = mapped_column(String(36), primary_key=True)


class ErasedMember(Base):
    """Erased ids: later events about them still count, but no per-member row is written."""

    __tablename__ = "erased_members"

    member_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Freshness(Base):
    """One row: up to which event time the rollups are complete, for every answer's ``as_of``."""

    __tablename__ = "freshness"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    as_of: Mapped[datetime] = mapped_column(UtcDateTime)
    applied_at: Mapped[datetime] = mapped_column(UtcDateTime)
    events_applied: Mapped[int] = mapped_column(Integer, default=0)


class SegmentSnapshot(Base):
    """When a segment's members were last fetched from the members service (the cache's age)."""

    __tablename__ = "segment_snapshots"

    segment_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    fetched_at: Mapped[datetime] = mapped_column(UtcDateTime)
    size: Mapped[int] = mapped_column(Integer, default=0)


class SegmentMember(Base):
    """A segment's members as the members service evaluated its rule at ``fetched_at``."""

    __tablename__ = "segment_members"

    segment_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(36), primary_key=True)


class CampaignTarget(Base):
    """Whom a campaign targets (its community, optionally a segment) and when it runs."""

    __tablename__ = "campaign_targets"

    campaign_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    community_id: Mapped[str] = mapped_column(String(36))
    segment_id: Mapped[str | None] = mapped_column(String(36))
    starts_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ends_at: Mapped[datetime] = mapped_column(UtcDateTime)
