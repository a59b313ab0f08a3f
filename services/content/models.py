from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import NAMING_CONVENTION, UtcDateTime

DEFAULT_REPORT_THRESHOLD = 3.0


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _counter() -> Mapped[int]:
    return mapped_column(Integer, default=0, server_default="0")


class Community(Base):
    """Replica of the members service's communities, fed by ``community.created``."""

    __tablename__ = "communities"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    owner_id: Mapped[str] = mapped_column(String(36))
    visibility: Mapped[str] = mapped_column(String(20))
    timezone: Mapped[str] = mapped_column(String(64))
    report_hide_threshold: Mapped[float] = mapped_column(
        Float, default=DEFAULT_REPORT_THRESHOLD, server_default=str(DEFAULT_REPORT_THRESHOLD)
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class CommunityRole(Base):
    """Replica of who belongs to which community and their role there."""

    __tablename__ = "community_roles"

    community_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    role: Mapped[str] = mapped_column(String(20))
    joined_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Post(Base):
    __tablename__ = "posts"
    __table_args__ = (
        Index("ix_posts_feed", "community_id", "status", "published_at", "id"),
        Index("ix_posts_due", "status", "publish_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    community_id: Mapped[str] = mapped_column(String(36))
    author_id: Mapped[str] = mapped_column(String(36), index=True)
    author_kind: Mapped[str] = mapped_column(String(16))
    type: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(16))
    hidden_reason: Mapped[str | None] = mapped_column(String(40))
    title: Mapped[str | None] = mapped_column(String(200))
    body: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    tags: Mapped[list[str]] = mapped_column(JSON)
    origin: Mapped[str] = mapped_column(String(16))
    source_name: Mapped[str | None] = mapped_column(String(200))
    source_url: Mapped[str | None] = mapped_column(String(2000))
    source_licence: Mapped[str | None] = mapped_column(String(100))
    publish_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    published_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    author_erased: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    comment_count: Mapped[int] = _counter()
    reaction_count: Mapped[int] = _counter()
    like_count: Mapped[int] = _counter()
    share_count: Mapped[int] = _counter()
    view_count: Mapped[int] = _counter()
    vote_count: Mapped[int] = _counter()
    answer_count: Mapped[int] = _counter()
    report_count: Mapped[int] = _counter()
    report_weight: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")


class Comment(Base):
    __tablename__ = "comments"
    __table_args__ = (Index("ix_comments_thread", "post_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    post_id: Mapped[str] = mapped_column(String(36))
    community_id: Mapped[str] = mapped_column(String(36))
    author_id: Mapped[str] = mapped_column(String(36), index=True)
    parent_id: Mapped[str | None] = mapped_column(String(36))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    edited_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Reaction(Base):
    __tablename__ = "reactions"

    post_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Share(Base):
    __tablename__ = "shares"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    post_id: Mapped[str] = mapped_column(String(36), index=True)
    member_id: Mapped[str] = mapped_column(String(36))
    channel: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class View(Base):
    """One row per member, post and day in the community's time zone."""

    __tablename__ = "views"

    post_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    share_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class PollVote(Base):
    __tablename__ = "poll_votes"

    post_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    option_ids: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class PollChoice(Base):
    """One row per chosen option, so results are a GROUP BY."""

    __tablename__ = "poll_choices"

    post_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    option_id: Mapped[str] = mapped_column(String(36), primary_key=True)


class QuizAnswer(Base):
    __tablename__ = "quiz_answers"

    post_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    answers: Mapped[dict[str, Any]] = mapped_column(JSON)
    score: Mapped[int] = mapped_column(Integer)
    max_score: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class SurveyResponse(Base):
    __tablename__ = "survey_responses"

    post_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    answers: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ModerationRule(Base):
    __tablename__ = "moderation_rules"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    community_id: Mapped[str | None] = mapped_column(String(36), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(20))
    replacement: Mapped[str | None] = mapped_column(String(100))
    created_by: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Report(Base):
    __tablename__ = "reports"
    __table_args__ = (UniqueConstraint("post_id", "reporter_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    post_id: Mapped[str] = mapped_column(String(36))
    community_id: Mapped[str] = mapped_column(String(36))
    reporter_id: Mapped[str] = mapped_column(String(36), index=True)
    reason: Mapped[str] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(String(500))
    weight: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ModerationCase(Base):
    """An item in the moderation queue: a post or comment waiting for a decision."""

    __tablename__ = "moderation_cases"
    __table_args__ = (Index("ix_moderation_cases_queue", "community_id", "status", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    community_id: Mapped[str] = mapped_column(String(36))
    target_kind: Mapped[str] = mapped_column(String(16))
    target_id: Mapped[str] = mapped_column(String(36), index=True)
    reason: Mapped[str] = mapped_column(String(40))
    words: Mapped[list[str]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    resolved_by: Mapped[str | None] = mapped_column(String(36))


class ModerationAudit(Base):
    """Every moderator decision: who, when, why, on what."""

    __tablename__ = "moderation_audit"
    __table_args__ = (Index("ix_moderation_audit_community", "community_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    community_id: Mapped[str] = mapped_column(String(36))
    target_kind: Mapped[str] = mapped_column(String(16))
    target_id: Mapped[str] = mapped_column(String(36))
    case_id: Mapped[str | None] = mapped_column(String(36))
    action: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[str] = mapped_column(String(36))
    actor_role: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
