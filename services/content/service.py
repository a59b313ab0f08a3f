"""Posts: creation with per-type payloads, screening, scheduling, visibility, feed and calendar."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Row, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.content import events
from services.content.access import author_kind, ensure_moderator, may_moderate
from services.content.models import Comment, Community, Post
from services.content.moderation import Screened, UnknownCommunity, moderation_service
from services.content.repository import POST_COLUMNS, CommunityRepository, PostRepository
from services.content.schemas import (
    PollCreate,
    PostBase,
    PostPage,
    PostRead,
    PostStatus,
    PostType,
    PostUpdate,
)
from services.content.watchwords import RuleAction
from shared.auth import Principal, Role
from shared.db import utcnow
from shared.errors import Conflict, Forbidden, NotFound, RateLimited, Unprocessable

POSTS_PER_MINUTE = 5
COMMENTS_PER_MINUTE = 20
DUPLICATE_WINDOW = timedelta(minutes=10)
NEW_MEMBER_WINDOW = timedelta(hours=24)
NEW_MEMBER_MAX_LINKS = 3
LINK = re.compile(r"https?://", re.IGNORECASE)

# A row of the posts table, as pages read it: the same attribute names as ``Post``.
PostRow = Row[Any]


class PostNotFound(NotFound):
    title = "Post not found"


class PostNotPublished(Conflict):
    code, title = "post-not-published", "The post is not published"


class InvalidSchedule(Unprocessable):
    code, title = "invalid-schedule", "Invalid schedule"


class NotTheAuthor(Forbidden):
    code, title = "not-the-author", "Only the author may do this"


class NotACommunityMember(Forbidden):
    code, title = "not-a-community-member", "Not a member of this community"


class DuplicateContent(Conflict):
    code, title = "duplicate-content", "Identical content was posted moments ago"


class InvalidTransition(Conflict):
    code, title = "invalid-transition", "Not possible in the post's current status"


def _field_error(field: str, message: str) -> dict[str, Any]:
    return {"errors": [{"field": field, "message": message}]}


def _future(value: datetime | None, now: datetime, field: str) -> None:
    if value is not None and value <= now:
        raise InvalidSchedule(
            f"{field} must be in the future", **_field_error(f"body.{field}", "in the past")
        )


async def check_spam(
    session: AsyncSession,
    model: type[Post] | type[Comment],
    principal: Principal,
    body: str | None,
    per_minute: int,
) -> None:
    """Per-member write rate and repeated identical text; staff are not limited."""
    if principal.role is not Role.MEMBER:
        return
    now = utcnow()
    recent = await session.scalar(
        select(func.count())
        .select_from(model)
        .where(model.author_id == principal.subject, model.created_at >= now - timedelta(minutes=1))
    )
    if (recent or 0) >= per_minute:
        raise RateLimited(60, f"At most {per_minute} per minute; try again shortly")
    if body:
        repeated = await session.scalar(
            select(model.id)
            .where(
                model.author_id == principal.subject,
                model.body == body,
                model.created_at >= now - DUPLICATE_WINDOW,
            )
            .limit(1)
        )
        if repeated is not None:
            raise DuplicateContent("You posted the same text a moment ago")


async def link_heavy_newcomer(
    session: AsyncSession, principal: Principal, community_id: str, text: str | None
) -> bool:
    """Many links from someone who joined the community in the last day wait for approval."""
    if principal.role is not Role.MEMBER or not text:
        return False
    if len(LINK.findall(text)) <= NEW_MEMBER_MAX_LINKS:
        return False
    membership = await CommunityRepository(session).membership(community_id, principal.subject)
    return membership is None or membership.joined_at >= utcnow() - NEW_MEMBER_WINDOW


def _published(post: Post) -> Post:
    if post.status != PostStatus.PUBLISHED.value:
        raise PostNotPublished(f"The post is {post.status}")
    return post


class PostService:
    async def community(self, session: AsyncSession, community_id: str) -> Community:
        community = await CommunityRepository(session).get(community_id)
        if community is None:
            raise UnknownCommunity(community_id)
        return community

    async def create(self, session: AsyncSession, principal: Principal, data: PostBase) -> Post:
        await self.community(session, data.community_id)
        if principal.role is Role.MEMBER:
            role = await CommunityRepository(session).role_of(data.community_id, principal.subject)
            if role is None:
                raise NotACommunityMember(f"Join community {data.community_id} before posting")
        now = utcnow()
        _future(data.publish_at, now, "publish_at")
        if isinstance(data, PollCreate):
            _future(data.closes_at, max(now, data.publish_at or now), "closes_at")
        screened = await moderation_service.screen(
            session, data.community_id, [data.title, data.body]
        )
        title, body = screened.texts
        await check_spam(session, Post, principal, body, POSTS_PER_MINUTE)
        post = Post(
            id=str(uuid.uuid4()),
            community_id=data.community_id,
            author_id=principal.subject,
            author_kind=author_kind(principal),
            type=PostType(getattr(data, "type")).value,  # noqa: B009 - every variant has it
            status=PostStatus.DRAFT.value,
            title=title,
            body=body,
            payload=data.payload(),
            tags=list(dict.fromkeys(data.tags)),
            origin=data.source.origin.value,
            source_name=data.source.name,
            source_url=str(data.source.url) if data.source.url else None,
            source_licence=data.source.licence,
            publish_at=data.publish_at,
            created_at=now,
            updated_at=now,
        )
        await PostRepository(session).add(post)
        if data.draft:
            return post
        await self._go_live(session, principal, post, screened, now)
        return post

    async def _go_live(
        self,
        session: AsyncSession,
        principal: Principal,
        post: Post,
        screened: Screened,
        now: datetime,
    ) -> None:
        """Out of draft: held for approval, scheduled, or published now."""
        if not screened.needs_approval and await link_heavy_newcomer(
            session, principal, post.community_id, post.body
        ):
            screened = Screened(
                screened.texts, screened.rule_ids, ["<links>"], RuleAction.REQUIRE_APPROVAL
            )
        if screened.needs_approval:
            post.status, post.hidden_reason = PostStatus.HIDDEN.value, "pending_approval"
            await events.post_hidden(session, post, "pending_approval", now)
        elif post.publish_at is not None and post.publish_at > now:
            post.status = PostStatus.SCHEDULED.value
        else:
            post.status, post.published_at = PostStatus.PUBLISHED.value, now
            await events.post_published(session, post, now)
        await session.flush()
        await moderation_service.record_hits(
            session,
            screened,
            community_id=post.community_id,
            author_id=post.author_id,
            post_id=post.id,
        )

    async def may_see(self, session: AsyncSession, principal: Principal, post: Post) -> bool:
        if post.status == PostStatus.PUBLISHED.value or post.author_id == principal.subject:
            return True
        return await may_moderate(session, principal, post.community_id)

    async def get_visible(self, session: AsyncSession, principal: Principal, post_id: str) -> Post:
        post = await PostRepository(session).get(post_id)
        return await self._visible(session, principal, post_id, post)

    async def _visible(
        self, session: AsyncSession, principal: Principal, post_id: str, post: Post | None
    ) -> Post:
        if post is None or not await self.may_see(session, principal, post):
            raise PostNotFound(f"No post with id {post_id}")
        return post

    async def get_published(
        self, session: AsyncSession, principal: Principal, post_id: str
    ) -> Post:
        return _published(await self.get_visible(session, principal, post_id))

    async def get_published_with_zone(
        self, session: AsyncSession, principal: Principal, post_id: str
    ) -> tuple[Post, ZoneInfo]:
        """A published post and its community's time zone, read together."""
        post, timezone = await PostRepository(session).get_with_timezone(post_id) or (None, "")
        post = _published(await self._visible(session, principal, post_id, post))
        return post, ZoneInfo(timezone)

    async def update(
        self, session: AsyncSession, principal: Principal, post_id: str, data: PostUpdate
    ) -> Post:
        post = await self.get_visible(session, principal, post_id)
        if post.author_id != principal.subject:
            raise NotTheAuthor("Only the author edits a post")
        if post.status == PostStatus.REMOVED.value:
            raise InvalidTransition("A removed post cannot be edited")
        now = utcnow()
        if data.publish_at is not None:
            if post.status not in (PostStatus.DRAFT.value, PostStatus.SCHEDULED.value):
                raise InvalidTransition("Only drafts and scheduled posts can be rescheduled")
            _future(data.publish_at, now, "publish_at")
            post.publish_at = data.publish_at
        if data.tags is not None:
            post.tags = list(dict.fromkeys(data.tags))
        if data.title is not None or data.body is not None:
            screened = await moderation_service.screen(
                session, post.community_id, [data.title, data.body]
            )
            title, body = screened.texts
            post.title = title if title is not None else post.title
            post.body = body if body is not None else post.body
            if screened.needs_approval and post.status in (
                PostStatus.PUBLISHED.value,
                PostStatus.SCHEDULED.value,
            ):
                post.status, post.hidden_reason = PostStatus.HIDDEN.value, "pending_approval"
                await events.post_hidden(session, post, "pending_approval", now)
            if post.status != PostStatus.DRAFT.value:  # drafts are screened when published
                await moderation_service.record_hits(
                    session,
                    screened,
                    community_id=post.community_id,
                    author_id=post.author_id,
                    post_id=post.id,
                )
        post.updated_at = now
        return post

    async def publish(self, session: AsyncSession, principal: Principal, post_id: str) -> Post:
        """Take a draft live (now, or at its ``publish_at``)."""
        post = await self.get_visible(session, principal, post_id)
        if post.author_id != principal.subject:
            raise NotTheAuthor("Only the author publishes a draft")
        if post.status != PostStatus.DRAFT.value:
            raise InvalidTransition(f"Only drafts can be published; this post is {post.status}")
        now = utcnow()
        screened = await moderation_service.screen(
            session, post.community_id, [post.title, post.body]
        )
        post.updated_at = now
        await self._go_live(session, principal, post, screened, now)
        return post

    async def remove(
        self, session: AsyncSession, principal: Principal, post_id: str, why: str | None
    ) -> None:
        post = await self.get_visible(session, principal, post_id)
        if post.status == PostStatus.REMOVED.value:
            raise InvalidTransition("The post is already removed")
        if post.author_id == principal.subject:
            reason = "author"
        else:
            await ensure_moderator(session, principal, post.community_id)
            reason = "moderator"
            await moderation_service.record_action(
                session,
                principal,
                community_id=post.community_id,
                target_kind="post",
                target_id=post.id,
                action="remove",
                reason=why or "removed by a moderator",
            )
        now = utcnow()
        post.status, post.hidden_reason, post.updated_at = PostStatus.REMOVED.value, reason, now
        await events.post_removed(session, post, reason, now)

    async def feed(
        self,
        session: AsyncSession,
        principal: Principal,
        community_id: str,
        cursor: str | None,
        limit: int,
    ) -> Sequence[PostRow]:
        posts = await PostRepository(session).feed(
            community_id, PostStatus.PUBLISHED.value, cursor, limit
        )
        if not posts:
            # Posts exist only in known communities (and content never deletes one), so only
            # an empty page needs the lookup that tells "no posts" from "no such community".
            await self.community(session, community_id)
        return posts

    async def calendar(
        self,
        session: AsyncSession,
        principal: Principal,
        community_id: str,
        start: date,
        end: date,
    ) -> Sequence[PostRow]:
        """Posts planned or published between two days of the community's calendar."""
        community = await self.community(session, community_id)
        await ensure_moderator(session, principal, community_id)
        if end < start:
            raise Unprocessable("`to` must not be before `from`")
        if (end - start).days > 366:
            raise Unprocessable("The calendar shows at most a year at a time")
        zone = ZoneInfo(community.timezone)
        # In UTC: SQLite compares stored timestamps as text, without their offset.
        begin = datetime.combine(start, time.min, zone).astimezone(UTC)
        finish = datetime.combine(end + timedelta(days=1), time.min, zone).astimezone(UTC)
        return await PostRepository(session).calendar(community_id, begin, finish)

    async def publish_due(self, session: AsyncSession, limit: int = 500) -> int:
        """One tick of the scheduler: publish every due post exactly once across replicas."""
        repo = PostRepository(session)
        now = utcnow()
        published = 0
        for post_id in await repo.claim_due(now, limit):
            values = {"status": PostStatus.PUBLISHED.value, "published_at": now, "updated_at": now}
            if not await repo.move(post_id, PostStatus.SCHEDULED.value, values):
                continue  # another replica published it first
            post = await repo.get(post_id)
            assert post is not None
            await repo.refresh(post)
            await events.post_published(session, post, now)
            published += 1
        return published

    async def to_page(
        self,
        session: AsyncSession,
        principal: Principal,
        posts: Sequence[PostRow],
        next_cursor: str | None,
    ) -> PostPage:
        """Several posts for one reader: whether they moderate is asked once per community."""
        moderates: dict[str, bool] = {}
        items = []
        for post in posts:
            if (
                post.type == PostType.QUIZ.value
                and post.author_id != principal.subject
                and post.community_id not in moderates
            ):
                moderates[post.community_id] = await may_moderate(
                    session, principal, post.community_id
                )
            items.append(_fields(principal, post, moderates.get(post.community_id, False)))
        # One validation of the whole page (in pydantic's core) instead of three models a post.
        return PostPage.model_validate({"items": items, "next_cursor": next_cursor})

    async def to_read(self, session: AsyncSession, principal: Principal, post: Post) -> PostRead:
        moderates = (
            post.type == PostType.QUIZ.value
            and post.author_id != principal.subject
            and await may_moderate(session, principal, post.community_id)
        )
        return PostRead.model_validate(_fields(principal, post, moderates))


# ``PostRead`` nests these columns; it ignores the flat names they arrive under.
_SOURCE_COLUMNS = {"origin": "origin", "name": "source_name", "url": "source_url",
                   "licence": "source_licence"}  # fmt: skip
_COUNTER_COLUMNS = {
    f"{name}s": f"{name}_count"
    for name in ("comment", "reaction", "like", "share", "view", "vote", "answer", "report")
}


def _fields(principal: Principal, post: Post | PostRow, moderates: bool) -> dict[str, Any]:
    """What ``PostRead`` holds of ``post`` for this reader."""
    if isinstance(post, Row):
        values = dict(zip(POST_COLUMNS, post, strict=True))  # 4x faster than Row._asdict()
    else:
        values = {name: getattr(post, name) for name in POST_COLUMNS}
    values["source"] = {key: values[column] for key, column in _SOURCE_COLUMNS.items()}
    values["counters"] = {key: values[column] for key, column in _COUNTER_COLUMNS.items()}
    payload = values["payload"]
    if values["type"] == PostType.QUIZ.value and not (
        values["author_id"] == principal.subject or moderates
    ):
        # Readers see the questions, not the answers; results come after answering.
        values["payload"] = {
            **payload,
            "questions": [
                {k: v for k, v in q.items() if k not in ("correct_option_ids", "explanation")}
                for q in payload.get("questions", [])
            ],
        }
    return values


post_service = PostService()
