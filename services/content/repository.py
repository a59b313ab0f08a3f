"""Every query of the content service."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import date, datetime
from functools import cache
from typing import Any

from sqlalchemy import Insert, Row, Table, Update, bindparam, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.content.models import (
    Comment,
    Community,
    CommunityRole,
    ModerationAudit,
    ModerationCase,
    ModerationRule,
    PollChoice,
    PollVote,
    Post,
    QuizAnswer,
    Reaction,
    Report,
    SurveyResponse,
    View,
)
from shared.db import conflict_insert, dialect_insert, dialect_of
from shared.errors import Unprocessable
from shared.scheduler import claim


class InvalidCursor(Unprocessable):
    code, title = "invalid-cursor", "Invalid cursor"


def encode_cursor(at: datetime | None, id_: str) -> str:
    raw = f"{at.isoformat() if at else ''}|{id_}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, id_ = raw.partition("|")
        return datetime.fromisoformat(at), id_
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidCursor("The cursor is not one this service handed out") from None


def _table(model: type[Any]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


# The hot statements are built once, with bound parameters: building a statement and its
# cache key on every request cost more than running it.
POSTS = _table(Post)
# Pages of posts are read as plain rows of the table, its columns in this order: they are only
# rendered, never changed, and building ORM objects cost more than the query.
POST_COLUMNS = tuple(POSTS.c.keys())
FEED = (
    select(POSTS)
    .where(POSTS.c.community_id == bindparam("community"), POSTS.c.status == bindparam("status"))
    .order_by(POSTS.c.published_at.desc(), POSTS.c.id.desc())
    .limit(bindparam("limit"))
)
FEED_AFTER = FEED.where(
    or_(
        POSTS.c.published_at < bindparam("at"),
        (POSTS.c.published_at == bindparam("at")) & (POSTS.c.id < bindparam("after")),
    )
)
POST_WITH_TIMEZONE = (
    select(Post, Community.timezone)
    .join(Community, Community.id == Post.community_id)
    .where(Post.id == bindparam("post"))
)


@cache
def _bump_statement(columns: tuple[str, ...]) -> Update:
    """``UPDATE posts SET n = n + :n_delta ...`` for these counters, built once per set."""
    return (
        update(POSTS)
        .where(POSTS.c.id == bindparam("post"))
        .values({name: POSTS.c[name] + bindparam(f"{name}_delta") for name in columns})
    )


@cache
def _insert_new_statement(table: Table, keys: tuple[str, ...], dialect: str) -> Insert:
    """``INSERT ... ON CONFLICT (keys) DO NOTHING RETURNING`` the first key, built once."""
    return (
        dialect_insert(table, dialect)
        .on_conflict_do_nothing(index_elements=list(keys))
        .returning(table.c[keys[0]])
    )


class CommunityRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, community_id: str) -> Community | None:
        return await self.session.get(Community, community_id)

    async def upsert(self, values: dict[str, Any]) -> None:
        stmt = conflict_insert(self.session, _table(Community)).values(**values)
        keep = {k: v for k, v in values.items() if k not in ("id", "report_hide_threshold")}
        await self.session.execute(stmt.on_conflict_do_update(index_elements=["id"], set_=keep))

    async def set_role(self, community_id: str, member_id: str, role: str, at: datetime) -> None:
        stmt = conflict_insert(self.session, _table(CommunityRole)).values(
            community_id=community_id, member_id=member_id, role=role, joined_at=at, updated_at=at
        )
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=["community_id", "member_id"],
                set_={"role": role, "updated_at": at},
            )
        )

    async def remove_role(self, community_id: str, member_id: str) -> None:
        await self.session.execute(
            delete(CommunityRole).where(
                CommunityRole.community_id == community_id, CommunityRole.member_id == member_id
            )
        )

    async def role_of(self, community_id: str, member_id: str) -> str | None:
        membership = await self.membership(community_id, member_id)
        return membership.role if membership else None

    async def membership(self, community_id: str, member_id: str) -> CommunityRole | None:
        return await self.session.get(CommunityRole, (community_id, member_id))

    async def set_threshold(self, community_id: str, threshold: float) -> None:
        await self.session.execute(
            update(Community)
            .where(Community.id == community_id)
            .values(report_hide_threshold=threshold)
        )


class PostRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, post_id: str, *, for_update: bool = False) -> Post | None:
        return await self.session.get(Post, post_id, with_for_update=for_update or None)

    async def add(self, post: Post) -> None:
        self.session.add(post)
        await self.session.flush()

    async def get_with_timezone(self, post_id: str) -> tuple[Post, str] | None:
        """The post and its community's time zone, in one statement."""
        row = (await self.session.execute(POST_WITH_TIMEZONE, {"post": post_id})).first()
        return None if row is None else (row[0], row[1])

    async def feed(
        self, community_id: str, status: str, cursor: str | None, limit: int
    ) -> Sequence[Row[Any]]:
        params: dict[str, Any] = {"community": community_id, "status": status, "limit": limit}
        query = FEED
        if cursor:
            params["at"], params["after"] = decode_cursor(cursor)
            query = FEED_AFTER
        return (await self.session.execute(query, params)).all()

    async def calendar(
        self, community_id: str, start: datetime, end: datetime
    ) -> Sequence[Row[Any]]:
        when = func.coalesce(POSTS.c.publish_at, POSTS.c.published_at)
        query = (
            select(POSTS)
            .where(
                POSTS.c.community_id == community_id,
                POSTS.c.status != "removed",
                when >= start,
                when < end,
            )
            .order_by(when, POSTS.c.id)
            .limit(1000)
        )
        return (await self.session.execute(query)).all()

    async def claim_due(self, now: datetime, limit: int) -> list[str]:
        query = (
            select(Post.id)
            .where(Post.status == "scheduled", Post.publish_at <= now)
            .order_by(Post.publish_at)
            .limit(limit)
        )
        return list((await self.session.scalars(claim(query))).all())

    async def move(self, post_id: str, from_status: str, values: dict[str, Any]) -> bool:
        """Conditional status change; False when another transaction moved the post first."""
        result = await self.session.execute(
            update(Post)
            .where(Post.id == post_id, Post.status == from_status)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def bump(self, post_id: str, **deltas: int) -> None:
        """Atomic ``SET n = n + d``: exact under concurrent writers, no read-modify-write."""
        params: dict[str, Any] = {f"{name}_delta": delta for name, delta in deltas.items()}
        params["post"] = post_id
        # Through the table, not the ORM class: no session objects to synchronise.
        await self.session.execute(_bump_statement(tuple(deltas)), params)

    async def add_report_weight(self, post_id: str, weight: float) -> float:
        result = await self.session.execute(
            update(Post)
            .where(Post.id == post_id)
            .values(report_count=Post.report_count + 1, report_weight=Post.report_weight + weight)
            .returning(Post.report_weight)
            .execution_options(synchronize_session=False)
        )
        return float(result.scalar_one())

    async def by_author(self, author_id: str) -> list[Post]:
        return list(await self.session.scalars(select(Post).where(Post.author_id == author_id)))

    async def refresh(self, post: Post) -> Post:
        await self.session.refresh(post)
        return post


class CommentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, comment_id: str) -> Comment | None:
        return await self.session.get(Comment, comment_id)

    async def add(self, comment: Comment) -> None:
        self.session.add(comment)
        await self.session.flush()

    async def page(
        self, post_id: str, statuses: Sequence[str], cursor: str | None, limit: int
    ) -> list[Comment]:
        query = select(Comment).where(Comment.post_id == post_id, Comment.status.in_(statuses))
        if cursor:
            at, id_ = decode_cursor(cursor)
            query = query.where(
                or_(Comment.created_at > at, (Comment.created_at == at) & (Comment.id > id_))
            )
        query = query.order_by(Comment.created_at, Comment.id).limit(limit)
        return list((await self.session.scalars(query)).all())

    async def recent_by_author(self, author_id: str, since: datetime) -> list[str]:
        query = select(Comment.body).where(
            Comment.author_id == author_id, Comment.created_at >= since
        )
        return list((await self.session.scalars(query)).all())

    async def scrub_author(self, author_id: str, marker: str) -> None:
        await self.session.execute(
            update(Comment)
            .where(Comment.author_id == author_id)
            .values(body=marker)
            .execution_options(synchronize_session=False)
        )


class InteractionRepository:
    """Unique interaction rows; each insert says whether it was new."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _insert_new(self, model: type[Any], keys: list[str], values: dict[str, Any]) -> bool:
        stmt = _insert_new_statement(_table(model), tuple(keys), dialect_of(self.session))
        return (await self.session.execute(stmt, values)).first() is not None

    async def add_reaction(self, values: dict[str, Any]) -> bool:
        return await self._insert_new(Reaction, ["post_id", "member_id", "kind"], values)

    async def remove_reaction(self, post_id: str, member_id: str, kind: str) -> bool:
        result = await self.session.execute(
            delete(Reaction).where(
                Reaction.post_id == post_id, Reaction.member_id == member_id, Reaction.kind == kind
            )
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def get_reaction(self, post_id: str, member_id: str, kind: str) -> Reaction | None:
        return await self.session.get(Reaction, (post_id, member_id, kind))

    async def add_view(self, values: dict[str, Any]) -> bool:
        return await self._insert_new(View, ["post_id", "member_id", "day"], values)

    async def add_vote(self, values: dict[str, Any]) -> bool:
        if not await self._insert_new(PollVote, ["post_id", "member_id"], values):
            return False
        await self.session.execute(
            conflict_insert(self.session, _table(PollChoice)).values(
                [
                    {"post_id": values["post_id"], "member_id": values["member_id"], "option_id": o}
                    for o in values["option_ids"]
                ]
            )
        )
        return True

    async def poll_tally(self, post_id: str) -> dict[str, int]:
        rows = await self.session.execute(
            select(PollChoice.option_id, func.count())
            .where(PollChoice.post_id == post_id)
            .group_by(PollChoice.option_id)
        )
        return {option: int(count) for option, count in rows.all()}

    async def vote_of(self, post_id: str, member_id: str) -> PollVote | None:
        return await self.session.get(PollVote, (post_id, member_id))

    async def add_quiz_answer(self, values: dict[str, Any]) -> bool:
        return await self._insert_new(QuizAnswer, ["post_id", "member_id"], values)

    async def quiz_answers(self, post_id: str, member_id: str | None) -> list[QuizAnswer]:
        query = select(QuizAnswer).where(QuizAnswer.post_id == post_id)
        if member_id is not None:
            query = query.where(QuizAnswer.member_id == member_id)
        query = query.order_by(QuizAnswer.score.desc(), QuizAnswer.created_at).limit(1000)
        return list((await self.session.scalars(query)).all())

    async def add_survey_response(self, values: dict[str, Any]) -> bool:
        return await self._insert_new(SurveyResponse, ["post_id", "member_id"], values)

    async def survey_responses(self, post_id: str, member_id: str | None) -> list[SurveyResponse]:
        query = select(SurveyResponse).where(SurveyResponse.post_id == post_id)
        if member_id is not None:
            query = query.where(SurveyResponse.member_id == member_id)
        query = query.order_by(SurveyResponse.created_at).limit(1000)
        return list((await self.session.scalars(query)).all())

    async def scrub_survey_text(self, member_id: str) -> None:
        """Free-text survey answers are personal; choices and ratings stay for the tallies."""
        responses = await self.session.scalars(
            select(SurveyResponse).where(SurveyResponse.member_id == member_id)
        )
        for response in responses:
            response.answers = {k: v for k, v in response.answers.items() if not isinstance(v, str)}


class ModerationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def rules_for(self, community_id: str | None) -> list[ModerationRule]:
        query = select(ModerationRule).where(
            or_(ModerationRule.community_id.is_(None), ModerationRule.community_id == community_id)
        )
        return list((await self.session.scalars(query.order_by(ModerationRule.created_at))).all())

    async def rules_of(self, community_id: str | None) -> list[ModerationRule]:
        query = select(ModerationRule)
        if community_id is None:
            query = query.where(ModerationRule.community_id.is_(None))
        else:
            query = query.where(ModerationRule.community_id == community_id)
        return list((await self.session.scalars(query.order_by(ModerationRule.created_at))).all())

    async def get_rule(self, rule_id: str) -> ModerationRule | None:
        return await self.session.get(ModerationRule, rule_id)

    async def delete_rule(self, rule: ModerationRule) -> None:
        await self.session.delete(rule)

    async def add(self, item: object) -> None:
        self.session.add(item)
        await self.session.flush()

    async def add_report(self, values: dict[str, Any]) -> bool:
        """False when this reporter already reported this post."""
        table = _table(Report)
        stmt = (
            conflict_insert(self.session, table)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["post_id", "reporter_id"])
            .returning(table.c.id)
        )
        return (await self.session.execute(stmt)).first() is not None

    async def report_history(self, reporter_id: str) -> dict[str, int]:
        rows = await self.session.execute(
            select(Report.status, func.count())
            .where(Report.reporter_id == reporter_id)
            .group_by(Report.status)
        )
        return {status: int(count) for status, count in rows.all()}

    async def resolve_reports(self, post_id: str, status: str, at: datetime) -> None:
        await self.session.execute(
            update(Report)
            .where(Report.post_id == post_id, Report.status == "open")
            .values(status=status, resolved_at=at)
            .execution_options(synchronize_session=False)
        )

    async def scrub_report_notes(self, reporter_id: str) -> None:
        await self.session.execute(
            update(Report)
            .where(Report.reporter_id == reporter_id)
            .values(note=None)
            .execution_options(synchronize_session=False)
        )

    async def open_case(self, target_kind: str, target_id: str) -> ModerationCase | None:
        return await self.session.scalar(
            select(ModerationCase).where(
                ModerationCase.target_kind == target_kind,
                ModerationCase.target_id == target_id,
                ModerationCase.status == "open",
            )
        )

    async def get_case(self, case_id: str) -> ModerationCase | None:
        return await self.session.get(ModerationCase, case_id)

    async def queue(
        self, community_ids: Sequence[str] | None, status: str, cursor: str | None, limit: int
    ) -> list[ModerationCase]:
        query = select(ModerationCase).where(ModerationCase.status == status)
        if community_ids is not None:
            query = query.where(ModerationCase.community_id.in_(community_ids))
        if cursor:
            at, id_ = decode_cursor(cursor)
            query = query.where(
                or_(
                    ModerationCase.created_at > at,
                    (ModerationCase.created_at == at) & (ModerationCase.id > id_),
                )
            )
        query = query.order_by(ModerationCase.created_at, ModerationCase.id).limit(limit)
        return list((await self.session.scalars(query)).all())

    async def audit(
        self, community_id: str, cursor: str | None, limit: int
    ) -> list[ModerationAudit]:
        query = select(ModerationAudit).where(ModerationAudit.community_id == community_id)
        if cursor:
            at, id_ = decode_cursor(cursor)
            query = query.where(
                or_(
                    ModerationAudit.created_at < at,
                    (ModerationAudit.created_at == at) & (ModerationAudit.id < id_),
                )
            )
        query = query.order_by(ModerationAudit.created_at.desc(), ModerationAudit.id.desc())
        return list((await self.session.scalars(query.limit(limit))).all())


def day_key(value: date) -> str:
    return value.isoformat()
