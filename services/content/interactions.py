"""Interactions on published posts: comments, reactions, shares, views, votes, answers, responses.

Each interaction writes its unique row and bumps the post's counter with an
atomic ``SET n = n + 1`` in the same transaction, and emits its event through
the outbox there too: counters stay exact however many requests race.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.content import events
from services.content.access import may_moderate
from services.content.masking import mask_pii
from services.content.models import Comment, Post, QuizAnswer, Reaction, Share, SurveyResponse
from services.content.moderation import moderation_service
from services.content.repository import (
    CommentRepository,
    InteractionRepository,
    PostRepository,
)
from services.content.schemas import (
    CommentCreate,
    OptionResult,
    PollResults,
    PostType,
    QuestionResult,
    QuizAnswerCreate,
    QuizResult,
    SurveyResponseCreate,
)
from services.content.service import COMMENTS_PER_MINUTE, check_spam, post_service
from shared.auth import Principal
from shared.db import utcnow
from shared.errors import Conflict, Forbidden, NotFound, Unprocessable


class CommentNotFound(NotFound):
    title = "Comment not found"


class ReactionNotFound(NotFound):
    title = "Reaction not found"


class InvalidReply(Unprocessable):
    code, title = "invalid-reply", "Invalid reply"


class WrongPostType(Unprocessable):
    code, title = "wrong-post-type", "This interaction does not fit the post's type"


class InvalidAnswer(Unprocessable):
    code, title = "invalid-answer", "Invalid answer"


class AlreadyAnswered(Conflict):
    code, title = "already-answered", "Already answered"


class PollClosed(Conflict):
    code, title = "poll-closed", "The poll is closed"


def _expect_type(post: Post, expected: PostType, what: str) -> None:
    if post.type != expected.value:
        raise WrongPostType(f"{what} need a {expected.value} post; this one is a {post.type}")


class InteractionService:
    # Comments ----------------------------------------------------------------

    async def comment(
        self, session: AsyncSession, principal: Principal, post_id: str, data: CommentCreate
    ) -> Comment:
        post = await post_service.get_published(session, principal, post_id)
        comments = CommentRepository(session)
        if data.parent_id is not None:
            parent = await comments.get(data.parent_id)
            if parent is None or parent.post_id != post.id:
                raise InvalidReply("parent_id must name a comment of this post")
            if parent.parent_id is not None:
                raise InvalidReply("Replies are one level deep: reply to the top-level comment")
        screened = await moderation_service.screen(session, post.community_id, [data.body])
        [body] = screened.texts
        await check_spam(session, Comment, principal, body, COMMENTS_PER_MINUTE)
        assert body is not None
        comment = Comment(
            id=str(uuid.uuid4()),
            post_id=post.id,
            community_id=post.community_id,
            author_id=principal.subject,
            parent_id=data.parent_id,
            body=body,
            status="pending" if screened.needs_approval else "visible",
            created_at=utcnow(),
        )
        await comments.add(comment)
        if comment.status == "visible":
            await PostRepository(session).bump(post.id, comment_count=1)
            await events.comment_created(session, post, comment)
        await moderation_service.record_hits(
            session,
            screened,
            community_id=post.community_id,
            author_id=principal.subject,
            post_id=post.id,
            comment_id=comment.id,
        )
        return comment

    async def _own_comment(
        self, session: AsyncSession, principal: Principal, post_id: str, comment_id: str
    ) -> tuple[Post, Comment]:
        post = await post_service.get_visible(session, principal, post_id)
        comment = await CommentRepository(session).get(comment_id)
        if comment is None or comment.post_id != post.id or comment.status == "deleted":
            raise CommentNotFound(f"No comment with id {comment_id} on this post")
        return post, comment

    async def edit_comment(
        self, session: AsyncSession, principal: Principal, post_id: str, comment_id: str, body: str
    ) -> Comment:
        post, comment = await self._own_comment(session, principal, post_id, comment_id)
        if comment.author_id != principal.subject:
            raise Forbidden("Only the author edits a comment")
        screened = await moderation_service.screen(session, post.community_id, [body])
        [text] = screened.texts
        assert text is not None
        comment.body, comment.edited_at = text, utcnow()
        await moderation_service.record_hits(
            session,
            screened,
            community_id=post.community_id,
            author_id=principal.subject,
            post_id=post.id,
            comment_id=comment.id,
        )
        return comment

    async def delete_comment(
        self,
        session: AsyncSession,
        principal: Principal,
        post_id: str,
        comment_id: str,
        why: str | None,
    ) -> None:
        post, comment = await self._own_comment(session, principal, post_id, comment_id)
        if comment.author_id != principal.subject:
            if not await may_moderate(session, principal, post.community_id):
                raise Forbidden("Only the author or a moderator deletes a comment")
            await moderation_service.record_action(
                session,
                principal,
                community_id=post.community_id,
                target_kind="comment",
                target_id=comment.id,
                action="delete",
                reason=why or "deleted by a moderator",
            )
        was_visible = comment.status == "visible"
        comment.status = "deleted"
        if was_visible:
            await PostRepository(session).bump(post.id, comment_count=-1)
            await events.comment_deleted(session, post, comment, utcnow())

    async def comments(
        self,
        session: AsyncSession,
        principal: Principal,
        post_id: str,
        cursor: str | None,
        limit: int,
    ) -> list[Comment]:
        post = await post_service.get_visible(session, principal, post_id)
        statuses = ["visible"]
        if await may_moderate(session, principal, post.community_id):
            statuses += ["pending", "hidden"]
        return await CommentRepository(session).page(post.id, statuses, cursor, limit)

    # Reactions, shares, views -------------------------------------------------

    async def react(
        self, session: AsyncSession, principal: Principal, post_id: str, kind: str
    ) -> tuple[Reaction, bool]:
        """The reaction and whether it is new (a repeat is not an error, and not counted)."""
        post = await post_service.get_published(session, principal, post_id)
        repo = InteractionRepository(session)
        now = utcnow()
        values = {
            "post_id": post.id,
            "member_id": principal.subject,
            "kind": kind,
            "created_at": now,
        }
        if await repo.add_reaction(values):
            deltas = {"reaction_count": 1, "like_count": 1 if kind == "like" else 0}
            await PostRepository(session).bump(post.id, **deltas)
            await events.reaction_added(session, post, principal.subject, kind, now)
            return Reaction(**values), True
        existing = await repo.get_reaction(post.id, principal.subject, kind)
        assert existing is not None
        return existing, False

    async def unreact(
        self, session: AsyncSession, principal: Principal, post_id: str, kind: str
    ) -> None:
        post = await post_service.get_visible(session, principal, post_id)
        if not await InteractionRepository(session).remove_reaction(
            post.id, principal.subject, kind
        ):
            raise ReactionNotFound(f"You have no {kind} reaction on this post")
        deltas = {"reaction_count": -1, "like_count": -1 if kind == "like" else 0}
        await PostRepository(session).bump(post.id, **deltas)
        await events.reaction_removed(session, post, principal.subject, kind, utcnow())

    async def share(
        self, session: AsyncSession, principal: Principal, post_id: str, channel: str
    ) -> Share:
        post = await post_service.get_published(session, principal, post_id)
        share = Share(
            id=str(uuid.uuid4()),
            post_id=post.id,
            member_id=principal.subject,
            channel=channel,
            created_at=utcnow(),
        )
        session.add(share)
        await session.flush()
        await PostRepository(session).bump(post.id, share_count=1)
        await events.post_shared(
            session, post, share.id, principal.subject, channel, share.created_at
        )
        return share

    async def view(
        self, session: AsyncSession, principal: Principal, post_id: str, share_id: str | None
    ) -> tuple[str, bool]:
        """Counts at most one view per member, post and day in the community's time zone."""
        post, zone = await post_service.get_published_with_zone(session, principal, post_id)
        if share_id is not None:
            share = await session.get(Share, share_id)
            if share is None or share.post_id != post.id:
                raise Unprocessable(
                    "share_id must name a share of this post",
                    errors=[{"field": "body.share_id", "message": "unknown share"}],
                )
        now = utcnow()
        day = now.astimezone(zone).date()
        values = {
            "post_id": post.id,
            "member_id": principal.subject,
            "day": day,
            "share_id": share_id,
            "created_at": now,
        }
        counted = await InteractionRepository(session).add_view(values)
        if counted:
            await PostRepository(session).bump(post.id, view_count=1)
            await events.post_viewed(session, post, principal.subject, share_id, now)
        return day.isoformat(), counted

    # Polls, quizzes, surveys ----------------------------------------------------

    async def vote(
        self, session: AsyncSession, principal: Principal, post_id: str, option_ids: list[str]
    ) -> PollResults:
        post = await post_service.get_published(session, principal, post_id)
        _expect_type(post, PostType.POLL, "Votes")
        now = utcnow()
        closes_at = self._closes_at(post)
        if closes_at is not None and closes_at <= now:
            raise PollClosed("The poll closed")
        known = {o["id"] for o in post.payload["options"]}
        chosen = list(dict.fromkeys(option_ids))
        if len(chosen) != len(option_ids) or not set(chosen) <= known:
            raise InvalidAnswer("option_ids must name distinct options of the poll")
        if not post.payload.get("multiple") and len(chosen) != 1:
            raise InvalidAnswer("This poll takes exactly one option")
        values = {
            "post_id": post.id,
            "member_id": principal.subject,
            "option_ids": chosen,
            "created_at": now,
        }
        if not await InteractionRepository(session).add_vote(values):
            raise AlreadyAnswered("You have already voted in this poll")
        await PostRepository(session).bump(post.id, vote_count=1)
        await events.poll_voted(session, post, principal.subject, chosen, now)
        return await self.poll_results(session, principal, post.id, post=post, mine=chosen)

    @staticmethod
    def _closes_at(post: Post) -> datetime | None:
        raw = post.payload.get("closes_at")
        return datetime.fromisoformat(raw) if raw else None

    async def poll_results(
        self,
        session: AsyncSession,
        principal: Principal,
        post_id: str,
        *,
        post: Post | None = None,
        mine: list[str] | None = None,
    ) -> PollResults:
        post = post or await post_service.get_visible(session, principal, post_id)
        _expect_type(post, PostType.POLL, "Poll results")
        repo = InteractionRepository(session)
        tally = await repo.poll_tally(post.id)
        if mine is None:
            vote = await repo.vote_of(post.id, principal.subject)
            mine = list(vote.option_ids) if vote else None
        await session.refresh(post, ["vote_count"])
        return PollResults(
            post_id=post.id,
            voters=post.vote_count,
            closes_at=self._closes_at(post),
            options=[
                OptionResult(id=o["id"], text=o["text"], votes=tally.get(o["id"], 0))
                for o in post.payload["options"]
            ],
            my_option_ids=mine,
        )

    async def answer_quiz(
        self, session: AsyncSession, principal: Principal, post_id: str, data: QuizAnswerCreate
    ) -> QuizResult:
        post = await post_service.get_published(session, principal, post_id)
        _expect_type(post, PostType.QUIZ, "Quiz answers")
        questions = {q["id"]: q for q in post.payload["questions"]}
        unknown = set(data.answers) - set(questions)
        if unknown:
            raise InvalidAnswer(f"Unknown question ids: {', '.join(sorted(unknown))}")
        for question_id, chosen in data.answers.items():
            options = {o["id"] for o in questions[question_id]["options"]}
            if not set(chosen) <= options:
                raise InvalidAnswer(f"Answers to {question_id} must name its options")
        score = sum(
            1
            for qid, q in questions.items()
            if set(data.answers.get(qid, [])) == set(q["correct_option_ids"])
        )
        now = utcnow()
        values = {
            "post_id": post.id,
            "member_id": principal.subject,
            "answers": data.answers,
            "score": score,
            "max_score": len(questions),
            "created_at": now,
        }
        if not await InteractionRepository(session).add_quiz_answer(values):
            raise AlreadyAnswered("You have already answered this quiz")
        await PostRepository(session).bump(post.id, answer_count=1)
        await events.quiz_answered(session, post, principal.subject, score, len(questions), now)
        return self.quiz_result(post, QuizAnswer(**values))

    @staticmethod
    def quiz_result(post: Post, answer: QuizAnswer) -> QuizResult:
        results = []
        for q in post.payload["questions"]:
            chosen = list(answer.answers.get(q["id"], []))
            results.append(
                QuestionResult(
                    question_id=q["id"],
                    correct=set(chosen) == set(q["correct_option_ids"]),
                    chosen_option_ids=chosen,
                    correct_option_ids=list(q["correct_option_ids"]),
                    explanation=q.get("explanation"),
                )
            )
        return QuizResult(
            post_id=post.id,
            member_id=answer.member_id,
            score=answer.score,
            max_score=answer.max_score,
            all_correct=answer.score == answer.max_score,
            questions=results,
            answered_at=answer.created_at,
        )

    async def quiz_results(
        self, session: AsyncSession, principal: Principal, post_id: str
    ) -> list[QuizResult]:
        """Moderators see everyone's results; a member sees their own."""
        post = await post_service.get_visible(session, principal, post_id)
        _expect_type(post, PostType.QUIZ, "Quiz results")
        everyone = await may_moderate(session, principal, post.community_id)
        answers = await InteractionRepository(session).quiz_answers(
            post.id, None if everyone else principal.subject
        )
        return [self.quiz_result(post, a) for a in answers]

    async def respond_to_survey(
        self, session: AsyncSession, principal: Principal, post_id: str, data: SurveyResponseCreate
    ) -> SurveyResponse:
        post = await post_service.get_published(session, principal, post_id)
        _expect_type(post, PostType.SURVEY, "Survey responses")
        answers = self._check_survey(post.payload["questions"], data.answers)
        now = utcnow()
        values = {
            "post_id": post.id,
            "member_id": principal.subject,
            "answers": answers,
            "created_at": now,
        }
        if not await InteractionRepository(session).add_survey_response(values):
            raise AlreadyAnswered("You have already answered this survey")
        await PostRepository(session).bump(post.id, answer_count=1)
        await events.survey_answered(session, post, principal.subject, now)
        return SurveyResponse(**values)

    @staticmethod
    def _check_survey(questions: list[dict[str, Any]], answers: dict[str, Any]) -> dict[str, Any]:
        by_id = {q["id"]: q for q in questions}
        unknown = set(answers) - set(by_id)
        if unknown:
            raise InvalidAnswer(f"Unknown question ids: {', '.join(sorted(unknown))}")
        cleaned: dict[str, Any] = {}
        for qid, q in by_id.items():
            value = answers.get(qid)
            if value is None or value == "" or value == []:
                if q.get("required", True):
                    raise InvalidAnswer(f"Question {qid} needs an answer")
                continue
            kind = q["kind"]
            if kind == "choice":
                options = {o["id"] for o in q["options"]}
                if not isinstance(value, list) or not set(value) <= options:
                    raise InvalidAnswer(f"Answer {qid} with a list of its option ids")
                if not q.get("multiple") and len(value) != 1:
                    raise InvalidAnswer(f"Question {qid} takes exactly one option")
            elif kind == "rating":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise InvalidAnswer(f"Answer {qid} with a number")
                if not 1 <= value <= q.get("scale_max", 5):
                    raise InvalidAnswer(f"Rate {qid} from 1 to {q.get('scale_max', 5)}")
            else:
                if not isinstance(value, str):
                    raise InvalidAnswer(f"Answer {qid} with text")
                value = mask_pii(value).text
            cleaned[qid] = value
        return cleaned

    async def survey_responses(
        self, session: AsyncSession, principal: Principal, post_id: str
    ) -> list[SurveyResponse]:
        post = await post_service.get_visible(session, principal, post_id)
        _expect_type(post, PostType.SURVEY, "Survey responses")
        everyone = await may_moderate(session, principal, post.community_id)
        return await InteractionRepository(session).survey_responses(
            post.id, None if everyone else principal.subject
        )


interaction_service = InteractionService()
