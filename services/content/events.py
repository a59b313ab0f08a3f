"""Events the content service publishes; their data models live in shared.events.contracts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.content.models import Comment, Post
from shared.events.contracts.content import (
    CommentCreated,
    CommentDeleted,
    ModerationAlerted,
    PollVoted,
    PostHidden,
    PostPublished,
    PostRemoved,
    PostReported,
    PostShared,
    PostViewed,
    QuizAnswered,
    ReactionAdded,
    ReactionRemoved,
    SurveyAnswered,
)
from shared.events.registry import EventData
from shared.outbox import add_event

SOURCE = "/services/content"


async def _emit(session: AsyncSession, data: EventData, subject: str) -> None:
    await add_event(session, data, subject=subject, source=SOURCE)


def _ids(post: Post) -> dict[str, str]:
    return {"post_id": post.id, "community_id": post.community_id}


async def post_published(session: AsyncSession, post: Post, at: datetime) -> None:
    data = PostPublished(
        **_ids(post),
        author_id=post.author_id,
        author_kind=post.author_kind,
        post_type=post.type,
        title=post.title,
        tags=list(post.tags),
        origin=post.origin,
        published_at=at,
    )
    await _emit(session, data, post.id)


async def post_hidden(session: AsyncSession, post: Post, reason: str, at: datetime) -> None:
    data = PostHidden(**_ids(post), author_id=post.author_id, reason=reason, hidden_at=at)
    await _emit(session, data, post.id)


async def post_removed(session: AsyncSession, post: Post, reason: str, at: datetime) -> None:
    data = PostRemoved(**_ids(post), author_id=post.author_id, reason=reason, removed_at=at)
    await _emit(session, data, post.id)


async def comment_created(session: AsyncSession, post: Post, comment: Comment) -> None:
    data = CommentCreated(
        **_ids(post),
        comment_id=comment.id,
        author_id=comment.author_id,
        post_author_id=post.author_id,
        parent_id=comment.parent_id,
        created_at=comment.created_at,
    )
    await _emit(session, data, post.id)


async def comment_deleted(
    session: AsyncSession, post: Post, comment: Comment, at: datetime
) -> None:
    data = CommentDeleted(
        **_ids(post),
        comment_id=comment.id,
        author_id=comment.author_id,
        post_author_id=post.author_id,
        deleted_at=at,
    )
    await _emit(session, data, post.id)


async def reaction_added(
    session: AsyncSession, post: Post, member_id: str, kind: str, at: datetime
) -> None:
    data = ReactionAdded(
        **_ids(post), member_id=member_id, kind=kind, post_author_id=post.author_id, reacted_at=at
    )
    await _emit(session, data, post.id)


async def reaction_removed(
    session: AsyncSession, post: Post, member_id: str, kind: str, at: datetime
) -> None:
    data = ReactionRemoved(
        **_ids(post), member_id=member_id, kind=kind, post_author_id=post.author_id, removed_at=at
    )
    await _emit(session, data, post.id)


async def post_shared(
    session: AsyncSession, post: Post, share_id: str, member_id: str, channel: str, at: datetime
) -> None:
    data = PostShared(
        **_ids(post),
        share_id=share_id,
        member_id=member_id,
        channel=channel,
        post_author_id=post.author_id,
        shared_at=at,
    )
    await _emit(session, data, post.id)


async def post_viewed(
    session: AsyncSession, post: Post, member_id: str, share_id: str | None, at: datetime
) -> None:
    data = PostViewed(
        **_ids(post),
        member_id=member_id,
        post_author_id=post.author_id,
        via_share_id=share_id,
        viewed_at=at,
    )
    await _emit(session, data, post.id)


async def poll_voted(
    session: AsyncSession, post: Post, member_id: str, option_ids: list[str], at: datetime
) -> None:
    data = PollVoted(
        **_ids(post),
        member_id=member_id,
        option_ids=option_ids,
        post_author_id=post.author_id,
        voted_at=at,
    )
    await _emit(session, data, post.id)


async def quiz_answered(
    session: AsyncSession, post: Post, member_id: str, score: int, max_score: int, at: datetime
) -> None:
    data = QuizAnswered(
        **_ids(post),
        member_id=member_id,
        score=score,
        max_score=max_score,
        all_correct=score == max_score,
        post_author_id=post.author_id,
        answered_at=at,
    )
    await _emit(session, data, post.id)


async def survey_answered(session: AsyncSession, post: Post, member_id: str, at: datetime) -> None:
    data = SurveyAnswered(
        **_ids(post), member_id=member_id, post_author_id=post.author_id, answered_at=at
    )
    await _emit(session, data, post.id)


async def post_reported(
    session: AsyncSession, post: Post, report_id: str, reporter_id: str, reason: str, at: datetime
) -> None:
    data = PostReported(
        **_ids(post), report_id=report_id, reporter_id=reporter_id, reason=reason, reported_at=at
    )
    await _emit(session, data, post.id)


async def moderation_alerted(
    session: AsyncSession,
    *,
    community_id: str,
    author_id: str,
    rule_ids: list[str],
    words: list[str],
    action: str,
    at: datetime,
    post_id: str | None = None,
    comment_id: str | None = None,
) -> None:
    data = ModerationAlerted(
        community_id=community_id,
        post_id=post_id,
        comment_id=comment_id,
        author_id=author_id,
        rule_ids=rule_ids,
        words=words,
        action=action,
        alerted_at=at,
    )
    await _emit(session, data, post_id or comment_id or community_id)
