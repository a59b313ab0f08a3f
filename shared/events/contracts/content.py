"""Events published by the content service on ``community.content.v1``.

Every interaction event names the post's author (``post_author_id``) so that
rewards can pay "like received" and analytics can credit authors without
calling back.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from shared.events.registry import EventData, event_type
from shared.events.topics import CONTENT


class PostEvent(EventData):
    post_id: str
    community_id: str


@event_type("post.published", topic=CONTENT)
class PostPublished(PostEvent):
    """A post became visible (published directly or by the scheduler at ``publish_at``)."""

    author_id: str
    author_kind: str = Field(description="member or staff.")
    post_type: str = Field(
        description="article, image_text, video, audio, poll, quiz, survey, livestream."
    )
    title: str | None = None
    tags: list[str] = Field(default_factory=list)
    origin: str = Field("original", description="original or repost.")
    published_at: datetime


@event_type("post.hidden", topic=CONTENT)
class PostHidden(PostEvent):
    """A post was hidden (by a moderator, by reports, or pending approval)."""

    author_id: str
    reason: str
    hidden_at: datetime


@event_type("post.removed", topic=CONTENT)
class PostRemoved(PostEvent):
    """A post was removed by its author or a moderator."""

    author_id: str
    reason: str
    removed_at: datetime


@event_type("comment.created", topic=CONTENT)
class CommentCreated(PostEvent):
    """A member or staff commented on a post (or replied to a comment)."""

    comment_id: str
    author_id: str
    post_author_id: str
    parent_id: str | None = None
    created_at: datetime


@event_type("comment.deleted", topic=CONTENT)
class CommentDeleted(PostEvent):
    """A comment was deleted by its author or a moderator."""

    comment_id: str
    author_id: str
    deleted_at: datetime
    post_author_id: str | None = Field(
        None, description="The post's author (optional for consumers of version 1 events)."
    )


@event_type("reaction.added", topic=CONTENT)
class ReactionAdded(PostEvent):
    """A member reacted to a post (like, love, haha, wow, ...); one per member per kind."""

    member_id: str
    kind: str
    post_author_id: str
    reacted_at: datetime


@event_type("reaction.removed", topic=CONTENT)
class ReactionRemoved(PostEvent):
    """A member took a reaction back."""

    member_id: str
    kind: str
    post_author_id: str
    removed_at: datetime


@event_type("post.shared", topic=CONTENT)
class PostShared(PostEvent):
    """A member shared a post to a channel (wechat, weibo, link, ...)."""

    share_id: str
    member_id: str
    channel: str
    post_author_id: str
    shared_at: datetime


@event_type("post.viewed", topic=CONTENT)
class PostViewed(PostEvent):
    """A member viewed a post; at most once per member, post and day."""

    member_id: str
    post_author_id: str
    via_share_id: str | None = Field(None, description="Set when the view came through a share.")
    viewed_at: datetime


@event_type("poll.voted", topic=CONTENT)
class PollVoted(PostEvent):
    """A member voted in a poll."""

    member_id: str
    option_ids: list[str]
    voted_at: datetime
    post_author_id: str | None = Field(
        None, description="The post's author (optional for consumers of version 1 events)."
    )


@event_type("quiz.answered", topic=CONTENT)
class QuizAnswered(PostEvent):
    """A member submitted quiz answers; scored on submission."""

    member_id: str
    score: int
    max_score: int
    all_correct: bool
    answered_at: datetime
    post_author_id: str | None = Field(
        None, description="The post's author (optional for consumers of version 1 events)."
    )


@event_type("survey.answered", topic=CONTENT)
class SurveyAnswered(PostEvent):
    """A member answered a survey."""

    member_id: str
    answered_at: datetime
    post_author_id: str | None = Field(
        None, description="The post's author (optional for consumers of version 1 events)."
    )


@event_type("post.reported", topic=CONTENT)
class PostReported(PostEvent):
    """A member reported a post (ad/spam, abuse, privacy, other)."""

    report_id: str
    reporter_id: str
    reason: str
    reported_at: datetime


@event_type("moderation.alerted", topic=CONTENT)
class ModerationAlerted(EventData):
    """Text hit a watched word; operators and moderators are alerted."""

    community_id: str
    post_id: str | None = None
    comment_id: str | None = None
    author_id: str
    rule_ids: list[str]
    words: list[str] = Field(description="The watched words or patterns that matched.")
    action: str = Field(
        description="The strongest action taken: block, require_approval, flag, mask, replace."
    )
    alerted_at: datetime
