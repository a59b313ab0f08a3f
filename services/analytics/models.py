"""Rollup tables: every read is a bounded, indexed range over these, never over raw events.

``scope`` is a community id, or ``""`` for the whole platform: each event writes
its rows once per scope it belongs to, so platform figures need no cross-community
distinct counts. Days are UTC days.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Date, Float, Index, Integer, MetaData, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import NAMING_CONVENTION, UtcDateTime

PLATFORM = ""  # the scope of platform-wide rows
ERASED_PREFIX = "erased-"  # the ids erased members' rows carry instead of theirs


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


class ActivityGap(Base):
    """Member-days by how many days passed since the member's previous such day in the scope.

    ``kind`` is ``active`` (member_activity_days) or ``viewer`` (``post.viewed`` step rows).
    Only gaps shorter than the longest window are kept: a longer gap, or a first day ever,
    counts as new in every window. Distinct members in ``a..b`` = member-days in ``a..b``
    minus the rows on a day ``d`` in it with ``gap <= d - a`` (windows.py).
    """

    __tablename__ = "activity_gaps"

    scope: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    gap: Mapped[int] = mapped_column(Integer, primary_key=True)
    members: Mapped[int] = mapped_column(Integer, default=0)


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
    # A member's viewer-days in order (windows.py: the neighbours of a new viewer-day).
    __table_args__ = (
        Index(
            "ix_member_event_days_viewer",
            "scope",
            "member_id",
            "day",
            postgresql_where=text("event_type = 'post.viewed'"),
            sqlite_where=text("event_type = 'post.viewed'"),
        ),
    )

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


class RawEvent(Base):
    """Every consumed event once, written with its batch's rollups: what a rebuild replays.

    Append-only for the consumer; only erasure rewrites a row in place (member ids to the
    erased key, personal fields blanked). ``member_id`` is the event's actor and
    ``related_id`` the other member it names (a post's author, a referrer), so erasure
    finds a member's rows on an index.
    """

    __tablename__ = "raw_events"
    __table_args__ = (Index("ix_raw_events_time", "time", "event_id"),)

    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str | None] = mapped_column(String(200))
    time: Mapped[datetime] = mapped_column(UtcDateTime)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    member_id: Mapped[str | None] = mapped_column(String(64), index=True)
    related_id: Mapped[str | None] = mapped_column(String(64), index=True)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Rebuild(Base):
    """One rebuild of the rollups from ``raw_events``, with its progress."""

    __tablename__ = "rebuilds"
    __table_args__ = (Index("ix_rebuilds_started", "started_at", "id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    requested_by: Mapped[str] = mapped_column(String(64))
    batch_size: Mapped[int] = mapped_column(Integer)
    events_total: Mapped[int] = mapped_column(Integer, default=0)
    events_done: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    error: Mapped[str | None] = mapped_column(Text)
