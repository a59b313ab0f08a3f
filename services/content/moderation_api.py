"""Routes of moderation: watched-word rules, the queue, decisions and the audit log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from services.content.moderation import moderation_service
from services.content.moderation_schemas import (
    AuditPage,
    AuditRead,
    CasePage,
    CaseRead,
    CommunitySettings,
    CommunitySettingsRead,
    DecisionCreate,
    RuleCreate,
    RuleList,
    RuleRead,
    TargetDecisionCreate,
)
from services.content.repository import encode_cursor
from shared.auth import CurrentPrincipal
from shared.web import SessionDep, TransactionalRoute

router = APIRouter(prefix="/v1/moderation", tags=["moderation"], route_class=TransactionalRoute)

Limit = Annotated[int, Query(ge=1, le=100)]


@router.post("/rules", status_code=status.HTTP_201_CREATED, response_model=RuleRead)
async def add_rule(body: RuleCreate, session: SessionDep, principal: CurrentPrincipal) -> RuleRead:
    """A watched word or pattern for one community (its moderators) or all (operators)."""
    rule = await moderation_service.add_rule(session, principal, body)
    return RuleRead.model_validate(rule)


@router.get("/rules", response_model=RuleList)
async def list_rules(
    session: SessionDep,
    principal: CurrentPrincipal,
    community_id: Annotated[str | None, Query(max_length=36)] = None,
) -> RuleList:
    """The rules of one community, or the global rules when no community is named."""
    rules = await moderation_service.list_rules(session, principal, community_id)
    return RuleList(items=[RuleRead.model_validate(r) for r in rules])


@router.delete("/rules/{rule_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_rule(rule_id: str, session: SessionDep, principal: CurrentPrincipal) -> Response:
    await moderation_service.delete_rule(session, principal, rule_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/queue", response_model=CasePage)
async def queue(
    session: SessionDep,
    principal: CurrentPrincipal,
    community_id: Annotated[str | None, Query(max_length=36)] = None,
    case_status: Annotated[str, Query(alias="status", pattern="^(open|resolved)$")] = "open",
    cursor: str | None = None,
    limit: Limit = 50,
) -> CasePage:
    """Posts and comments waiting for a decision (held, flagged or reported), oldest first."""
    cases = await moderation_service.queue(
        session, principal, community_id, case_status, cursor, limit
    )
    next_cursor = encode_cursor(cases[-1].created_at, cases[-1].id) if len(cases) == limit else None
    return CasePage(items=[CaseRead.model_validate(c) for c in cases], next_cursor=next_cursor)


@router.post(
    "/queue/{case_id}/actions", status_code=status.HTTP_201_CREATED, response_model=AuditRead
)
async def decide_case(
    case_id: str, body: DecisionCreate, session: SessionDep, principal: CurrentPrincipal
) -> AuditRead:
    """approve, reject, hide or restore the item of an open case; audited."""
    audit = await moderation_service.decide_case(
        session, principal, case_id, body.action, body.reason
    )
    return AuditRead.model_validate(audit)


@router.post("/actions", status_code=status.HTTP_201_CREATED, response_model=AuditRead)
async def act_on_target(
    body: TargetDecisionCreate, session: SessionDep, principal: CurrentPrincipal
) -> AuditRead:
    """A decision on any post or comment, queued or not; resolves its open case; audited."""
    kind, target = (
        ("post", body.post_id) if body.post_id is not None else ("comment", body.comment_id)
    )
    assert target is not None  # the schema's validator guarantees exactly one of them
    audit = await moderation_service.decide(
        session, principal, kind, target, body.action, body.reason
    )
    return AuditRead.model_validate(audit)


@router.get("/actions", response_model=AuditPage)
async def audit_log(
    session: SessionDep,
    principal: CurrentPrincipal,
    community_id: Annotated[str, Query(max_length=36)],
    cursor: str | None = None,
    limit: Limit = 50,
) -> AuditPage:
    """Every moderation decision in a community, newest first: who, when, why."""
    rows = await moderation_service.audit(session, principal, community_id, cursor, limit)
    next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id) if len(rows) == limit else None
    return AuditPage(items=[AuditRead.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.put("/communities/{community_id}/settings", response_model=CommunitySettingsRead)
async def community_settings(
    community_id: str, body: CommunitySettings, session: SessionDep, principal: CurrentPrincipal
) -> CommunitySettingsRead:
    """The report weight that auto-hides a post in this community."""
    await moderation_service.set_threshold(
        session, principal, community_id, body.report_hide_threshold
    )
    return CommunitySettingsRead(
        community_id=community_id, report_hide_threshold=body.report_hide_threshold
    )
