"""Routes of posts and their interactions: parse, authorise, call the service, shape the reply."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Response, status

from services.content.interactions import interaction_service
from services.content.models import SurveyResponse
from services.content.moderation import moderation_service
from services.content.moderation_schemas import ReportCreate, ReportRead
from services.content.repository import encode_cursor
from services.content.schemas import (
    CommentCreate,
    CommentPage,
    CommentRead,
    CommentUpdate,
    PollResults,
    PostCreate,
    PostPage,
    PostRead,
    PostUpdate,
    QuizAnswerCreate,
    QuizResult,
    QuizResultPage,
    ReactionCreate,
    ReactionKind,
    ReactionRead,
    ShareCreate,
    ShareRead,
    SurveyResponseCreate,
    SurveyResponseRead,
    ViewCreate,
    ViewRead,
    VoteCreate,
)
from services.content.service import post_service
from shared.auth import Principal, Role, require_roles, require_scope
from shared.web import SessionDep, TransactionalRoute

router = APIRouter(prefix="/v1/posts", tags=["content"], route_class=TransactionalRoute)

PEOPLE = (Role.MEMBER, Role.MODERATOR, Role.OPERATOR)
# Members and staff read and write; partners need the content scopes.
Reader = Annotated[Principal, Depends(require_scope("content:read", staff=PEOPLE))]
Writer = Annotated[Principal, Depends(require_scope("content:write", staff=PEOPLE))]
# Reactions, shares, views and answers are a member's own acts.
Member = Annotated[Principal, Depends(require_roles(Role.MEMBER))]
Person = Annotated[Principal, Depends(require_roles(*PEOPLE))]
Limit = Annotated[int, Query(ge=1, le=100)]
Reason = Annotated[str | None, Query(max_length=500, description="Why (moderators; audited).")]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=PostRead)
async def create_post(
    body: Annotated[PostCreate, Body()], session: SessionDep, principal: Writer, response: Response
) -> PostRead:
    """Create a post of any type. ``publish_at`` in the future schedules it; ``draft`` keeps it.

    Emits ``post.published`` when it goes live now; watched-word hits emit ``moderation.alerted``.
    """
    post = await post_service.create(session, principal, body)
    response.headers["Location"] = f"{router.prefix}/{post.id}"
    return await post_service.to_read(session, principal, post)


@router.get("", response_model=PostPage)
async def community_feed(
    session: SessionDep,
    principal: Reader,
    community_id: Annotated[str, Query(max_length=36)],
    cursor: str | None = None,
    limit: Limit = 20,
) -> PostPage:
    """Published posts of a community, newest first, with their counters."""
    posts = await post_service.feed(session, principal, community_id, cursor, limit)
    next_cursor = (
        encode_cursor(posts[-1].published_at, posts[-1].id) if len(posts) == limit else None
    )
    return await post_service.to_page(session, principal, posts, next_cursor)


@router.get("/calendar", response_model=PostPage)
async def content_calendar(
    session: SessionDep,
    principal: Reader,
    community_id: Annotated[str, Query(max_length=36)],
    from_: Annotated[date, Query(alias="from")],
    to: date,
) -> PostPage:
    """Drafts with a date, scheduled, published and hidden posts between two days (community time).

    For operators and the community's moderators.
    """
    posts = await post_service.calendar(session, principal, community_id, from_, to)
    return await post_service.to_page(session, principal, posts, None)


@router.get("/{post_id}", response_model=PostRead)
async def get_post(post_id: str, session: SessionDep, principal: Reader) -> PostRead:
    post = await post_service.get_visible(session, principal, post_id)
    return await post_service.to_read(session, principal, post)


@router.patch("/{post_id}", response_model=PostRead)
async def edit_post(
    post_id: str, body: PostUpdate, session: SessionDep, principal: Writer
) -> PostRead:
    """The author edits title, body, tags, or reschedules a draft or scheduled post."""
    post = await post_service.update(session, principal, post_id, body)
    return await post_service.to_read(session, principal, post)


@router.post("/{post_id}/publish", response_model=PostRead)
async def publish_draft(post_id: str, session: SessionDep, principal: Writer) -> PostRead:
    """The author takes a draft live, now or at its ``publish_at``."""
    post = await post_service.publish(session, principal, post_id)
    return await post_service.to_read(session, principal, post)


@router.delete("/{post_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_post(
    post_id: str, session: SessionDep, principal: Writer, reason: Reason = None
) -> Response:
    """The author or a moderator removes a post; emits ``post.removed``; moderators are audited."""
    await post_service.remove(session, principal, post_id, reason)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{post_id}/comments", status_code=status.HTTP_201_CREATED, response_model=CommentRead)
async def add_comment(
    post_id: str, body: CommentCreate, session: SessionDep, principal: Person
) -> CommentRead:
    """Comment or reply one level deep; emits ``comment.created`` unless held for approval."""
    comment = await interaction_service.comment(session, principal, post_id, body)
    return CommentRead.model_validate(comment)


@router.get("/{post_id}/comments", response_model=CommentPage)
async def list_comments(
    post_id: str,
    session: SessionDep,
    principal: Reader,
    cursor: str | None = None,
    limit: Limit = 50,
) -> CommentPage:
    """Comments oldest first; replies carry their ``parent_id``."""
    items = await interaction_service.comments(session, principal, post_id, cursor, limit)
    next_cursor = encode_cursor(items[-1].created_at, items[-1].id) if len(items) == limit else None
    return CommentPage(
        items=[CommentRead.model_validate(c) for c in items], next_cursor=next_cursor
    )


@router.patch("/{post_id}/comments/{comment_id}", response_model=CommentRead)
async def edit_comment(
    post_id: str, comment_id: str, body: CommentUpdate, session: SessionDep, principal: Person
) -> CommentRead:
    comment = await interaction_service.edit_comment(
        session, principal, post_id, comment_id, body.body
    )
    return CommentRead.model_validate(comment)


@router.delete("/{post_id}/comments/{comment_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_comment(
    post_id: str, comment_id: str, session: SessionDep, principal: Person, reason: Reason = None
) -> Response:
    """The author or a moderator deletes a comment; emits ``comment.deleted``."""
    await interaction_service.delete_comment(session, principal, post_id, comment_id, reason)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{post_id}/reactions", status_code=status.HTTP_201_CREATED, response_model=ReactionRead
)
async def react(
    post_id: str, body: ReactionCreate, session: SessionDep, principal: Member, response: Response
) -> ReactionRead:
    """One reaction per member and kind: 201 when new (``reaction.added``), 200 if there."""
    reaction, created = await interaction_service.react(session, principal, post_id, body.kind)
    if not created:
        response.status_code = status.HTTP_200_OK
    return ReactionRead.model_validate(reaction)


@router.delete("/{post_id}/reactions/{kind}", status_code=status.HTTP_204_NO_CONTENT)
async def unreact(
    post_id: str, kind: ReactionKind, session: SessionDep, principal: Member
) -> Response:
    await interaction_service.unreact(session, principal, post_id, kind.value)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{post_id}/shares", status_code=status.HTTP_201_CREATED, response_model=ShareRead)
async def share(
    post_id: str, body: ShareCreate, session: SessionDep, principal: Member
) -> ShareRead:
    """Record a share to a channel; views arriving through it may carry its ``share_id``."""
    shared = await interaction_service.share(session, principal, post_id, body.channel.value)
    return ShareRead.model_validate(shared)


@router.post("/{post_id}/views", status_code=status.HTTP_201_CREATED, response_model=ViewRead)
async def view(
    post_id: str, body: ViewCreate, session: SessionDep, principal: Member, response: Response
) -> ViewRead:
    """201 and ``post.viewed`` for the first view of the day; 200 and no event after that."""
    day, counted = await interaction_service.view(session, principal, post_id, body.share_id)
    if not counted:
        response.status_code = status.HTTP_200_OK
    return ViewRead(post_id=post_id, day=day, counted=counted)


@router.post("/{post_id}/votes", status_code=status.HTTP_201_CREATED, response_model=PollResults)
async def vote(
    post_id: str, body: VoteCreate, session: SessionDep, principal: Member
) -> PollResults:
    """Vote once in a poll; answers with the results."""
    return await interaction_service.vote(session, principal, post_id, body.option_ids)


@router.get("/{post_id}/votes", response_model=PollResults)
async def poll_results(post_id: str, session: SessionDep, principal: Reader) -> PollResults:
    return await interaction_service.poll_results(session, principal, post_id)


@router.post("/{post_id}/answers", status_code=status.HTTP_201_CREATED, response_model=QuizResult)
async def answer_quiz(
    post_id: str, body: QuizAnswerCreate, session: SessionDep, principal: Member
) -> QuizResult:
    """Answer a quiz once; scored at once, with the correct answers and explanations."""
    return await interaction_service.answer_quiz(session, principal, post_id, body)


@router.get("/{post_id}/answers", response_model=QuizResultPage)
async def quiz_results(post_id: str, session: SessionDep, principal: Reader) -> QuizResultPage:
    """A member's own result; moderators of the community see every member's."""
    return QuizResultPage(items=await interaction_service.quiz_results(session, principal, post_id))


@router.post(
    "/{post_id}/responses", status_code=status.HTTP_201_CREATED, response_model=SurveyResponseRead
)
async def respond_to_survey(
    post_id: str, body: SurveyResponseCreate, session: SessionDep, principal: Member
) -> SurveyResponseRead:
    response = await interaction_service.respond_to_survey(session, principal, post_id, body)
    return _survey_read(response)


@router.get("/{post_id}/responses", response_model=list[SurveyResponseRead])
async def survey_responses(
    post_id: str, session: SessionDep, principal: Reader
) -> list[SurveyResponseRead]:
    items = await interaction_service.survey_responses(session, principal, post_id)
    return [_survey_read(r) for r in items]


def _survey_read(response: SurveyResponse) -> SurveyResponseRead:
    return SurveyResponseRead(
        post_id=response.post_id,
        member_id=response.member_id,
        answers=response.answers,
        answered_at=response.created_at,
    )


@router.post("/{post_id}/reports", status_code=status.HTTP_201_CREATED, response_model=ReportRead)
async def report_post(
    post_id: str, body: ReportCreate, session: SessionDep, principal: Person
) -> ReportRead:
    """Report a post once; weighted reports past the community's threshold hide it."""
    post = await post_service.get_published(session, principal, post_id)
    report = await moderation_service.report(session, principal, post, body)
    return ReportRead.model_validate(report)
