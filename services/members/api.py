"""Members HTTP API: parse, authorise, call the service, shape the reply."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from sqlalchemy import true

from services.members.community_service import community_service
from services.members.repository import CommunityRepository, MemberRepository, SegmentRepository
from services.members.schemas import (
    AuthenticatedMember,
    CommunityCreate,
    CommunityPage,
    CommunityRead,
    CommunityStaffRead,
    CommunityUpdate,
    Credentials,
    MemberCard,
    MemberCreate,
    MemberExport,
    MemberPage,
    MemberPrivateRead,
    MembershipCreate,
    MembershipPage,
    MembershipRead,
    MembershipUpdate,
    MemberUpdate,
    ReferralTree,
    ReferrerClaim,
    SegmentCount,
    SegmentCreate,
    SegmentPage,
    SegmentPreview,
    SegmentRead,
    SegmentUpdate,
)
from services.members.segment_service import NotInSegment, segment_service
from services.members.service import MemberService
from shared.auth import CurrentPrincipal, Principal, Role, require_scope
from shared.errors import Forbidden, problem_responses
from shared.pagination import Cursor, Limit, decode_cursor, encode_cursor
from shared.web import SessionDep, TransactionalRoute


async def get_member_service(request: Request) -> MemberService:  # async: no thread-pool hop
    service: MemberService = request.app.state.member_service
    return service


Members = Annotated[MemberService, Depends(get_member_service)]
SegmentReader = Annotated[
    Principal, Depends(require_scope("segments:read", staff=(Role.OPERATOR,)))
]
SegmentWriter = Annotated[Principal, Depends(require_scope("segments:write"))]
Gatekeeper = Annotated[Principal, Depends(require_scope("members:authenticate", staff=()))]


def _after(cursor: str | None) -> str | None:
    return None if cursor is None else str(decode_cursor(cursor, 1)[0])


def _next(ids: list[str], limit: int) -> str | None:
    return encode_cursor(ids[limit - 1]) if len(ids) > limit else None


def _self_or_operator(principal: Principal, member_id: str) -> None:
    if not principal.can_act_for(member_id):
        raise Forbidden("Only the member itself and operators may do this")


# --- members ----------------------------------------------------------------------------------

members = APIRouter(prefix="/v1/members", tags=["members"], route_class=TransactionalRoute)


@members.post("", status_code=status.HTTP_201_CREATED, response_model=MemberPrivateRead)
async def register_member(
    body: MemberCreate, session: SessionDep, service: Members, response: Response
) -> MemberPrivateRead:
    """Register a member (public). Honours ``Idempotency-Key``; emits ``member.registered``,
    and ``member.referred`` when an invite code is given."""
    member = await service.register(session, body)
    response.headers["Location"] = f"{members.prefix}/{member.id}"
    return service.private(member)


@members.get("", response_model=MemberPage)
async def list_members(
    session: SessionDep,
    principal: Annotated[Principal, Depends(require_scope("members:read"))],
    cursor: Cursor = None,
    limit: Limit = 50,
) -> MemberPage:
    """Every live member, by id (operators; partners with ``members:read``). No contacts."""

    rows = await MemberRepository(session).page(true(), _after(cursor), limit + 1)
    return MemberPage(
        items=[MemberCard.model_validate(m) for m in rows[:limit]],
        next_cursor=_next([m.id for m in rows], limit),
    )


@members.get("/{member_id}", response_model=MemberPrivateRead | MemberCard)
async def get_member(
    member_id: str, session: SessionDep, service: Members, principal: CurrentPrincipal
) -> MemberPrivateRead | MemberCard:
    """A member. Contact details only for the member itself and operators; moderators see
    their communities' members without them."""
    return await service.view(session, principal, member_id)


@members.patch("/{member_id}", response_model=MemberPrivateRead)
async def update_member(
    member_id: str,
    body: MemberUpdate,
    session: SessionDep,
    service: Members,
    principal: CurrentPrincipal,
) -> MemberPrivateRead:
    """Edit a profile (the member itself or operators). Emits ``member.profile_updated`` and
    ``member.consent_changed`` as they apply."""
    _self_or_operator(principal, member_id)
    member = await service.get(session, member_id)
    return service.private(await service.update(session, member, body))


@members.get("/{member_id}/export", response_model=MemberExport, responses=problem_responses(410))
async def export_member(
    member_id: str, session: SessionDep, service: Members, principal: CurrentPrincipal
) -> MemberExport:
    """Everything held about the member, machine-readable (the member itself or operators)."""
    _self_or_operator(principal, member_id)
    return await service.export(session, await service.get(session, member_id))


@members.delete("/{member_id}", status_code=status.HTTP_204_NO_CONTENT)
async def erase_member(
    member_id: str, session: SessionDep, service: Members, principal: CurrentPrincipal
) -> Response:
    """Erase the member's personal data; the pseudonymous id stays. Emits ``member.erased``."""
    _self_or_operator(principal, member_id)
    await service.erase(session, member_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@members.post("/{member_id}/referrer", response_model=MemberPrivateRead)
async def claim_referrer(
    member_id: str,
    body: ReferrerClaim,
    session: SessionDep,
    service: Members,
    principal: CurrentPrincipal,
) -> MemberPrivateRead:
    """Add the invite code of whoever invited you, soon after registering; once only."""
    _self_or_operator(principal, member_id)
    member = await service.get(session, member_id)
    return service.private(await service.claim_referrer(session, member, body.invite_code))


@members.get("/{member_id}/referrals", response_model=ReferralTree)
async def referral_tree(
    member_id: str,
    session: SessionDep,
    service: Members,
    principal: CurrentPrincipal,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> ReferralTree:
    """Who the member brought in, how many activated, and the size of the whole tree below."""
    _self_or_operator(principal, member_id)
    member = await service.get(session, member_id)
    return await service.referral_tree(session, member, _after(cursor), limit)


# --- communities ------------------------------------------------------------------------------

communities = APIRouter(
    prefix="/v1/communities", tags=["communities"], route_class=TransactionalRoute
)


async def _community_view(
    session: SessionDep, principal: Principal, community_id: str
) -> CommunityRead | CommunityStaffRead:
    community = await community_service.get(session, community_id)
    if await community_service.manages(session, principal, community_id):
        return CommunityStaffRead.model_validate(community)
    return CommunityRead.model_validate(community)


@communities.post("", status_code=status.HTTP_201_CREATED, response_model=CommunityStaffRead)
async def create_community(
    body: CommunityCreate, session: SessionDep, principal: CurrentPrincipal, response: Response
) -> CommunityStaffRead:
    """Create a community; its owner joins as owner. Emits ``community.created`` and
    ``member.joined_community``. Honours ``Idempotency-Key``."""
    community = await community_service.create(session, principal, body)
    response.headers["Location"] = f"{communities.prefix}/{community.id}"
    return CommunityStaffRead.model_validate(community)


@communities.get("", response_model=CommunityPage)
async def list_communities(
    session: SessionDep, _: CurrentPrincipal, cursor: Cursor = None, limit: Limit = 50
) -> CommunityPage:
    rows = await CommunityRepository(session).page(_after(cursor), limit + 1)
    return CommunityPage(
        items=[CommunityRead.model_validate(c) for c in rows[:limit]],
        next_cursor=_next([c.id for c in rows], limit),
    )


@communities.get("/{community_id}", response_model=CommunityStaffRead | CommunityRead)
async def get_community(
    community_id: str, session: SessionDep, principal: CurrentPrincipal
) -> CommunityRead | CommunityStaffRead:
    return await _community_view(session, principal, community_id)


@communities.patch("/{community_id}", response_model=CommunityStaffRead)
async def update_community(
    community_id: str, body: CommunityUpdate, session: SessionDep, principal: CurrentPrincipal
) -> CommunityStaffRead:
    community = await community_service.get(session, community_id)
    updated = await community_service.update(session, principal, community, body)
    return CommunityStaffRead.model_validate(updated)


@communities.get("/{community_id}/members", response_model=MembershipPage)
async def list_community_members(
    community_id: str,
    session: SessionDep,
    principal: CurrentPrincipal,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> MembershipPage:
    """Members and their roles (the community's members, its managers, operators)."""
    await community_service.get(session, community_id)
    is_member = principal.role is Role.MEMBER and (
        await community_service.role_of(session, community_id, principal.subject) is not None
    )
    if not (is_member or await community_service.manages(session, principal, community_id)):
        raise Forbidden("Only the community's members and managers see who is in it")
    rows = await CommunityRepository(session).members_page(community_id, _after(cursor), limit + 1)
    return MembershipPage(
        items=[MembershipRead.model_validate(m) for m in rows[:limit]],
        next_cursor=_next([m.member_id for m in rows], limit),
    )


@communities.post(
    "/{community_id}/members", status_code=status.HTTP_201_CREATED, response_model=MembershipRead
)
async def join_community(
    community_id: str,
    body: MembershipCreate,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> MembershipRead:
    """Join (yourself) or add a member (managers). Invite-only communities need the code.
    Joining twice is harmless. Emits ``member.joined_community``."""
    community = await community_service.get(session, community_id)
    return MembershipRead.model_validate(
        await community_service.join(session, principal, community, body)
    )


@communities.patch("/{community_id}/members/{member_id}", response_model=MembershipRead)
async def change_role(
    community_id: str,
    member_id: str,
    body: MembershipUpdate,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> MembershipRead:
    """Set a member's role (owner or operators). Making someone owner transfers ownership.
    Emits ``member.role_changed``."""
    community = await community_service.get(session, community_id)
    return MembershipRead.model_validate(
        await community_service.set_role(session, principal, community, member_id, body.role)
    )


@communities.delete("/{community_id}/members/{member_id}", status_code=status.HTTP_204_NO_CONTENT)
async def leave_community(
    community_id: str, member_id: str, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """Leave (yourself) or remove a member (managers). Emits ``member.left_community``."""
    community = await community_service.get(session, community_id)
    await community_service.leave(session, principal, community, member_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- segments ---------------------------------------------------------------------------------

segments = APIRouter(prefix="/v1/segments", tags=["segments"], route_class=TransactionalRoute)


@segments.post("", status_code=status.HTTP_201_CREATED, response_model=SegmentRead)
async def create_segment(
    body: SegmentCreate, session: SessionDep, principal: SegmentWriter, response: Response
) -> SegmentRead:
    """Save a rule-based segment (operators). Honours ``Idempotency-Key``."""
    segment = await segment_service.create(session, principal, body)
    response.headers["Location"] = f"{segments.prefix}/{segment.id}"
    return SegmentRead.model_validate(segment)


@segments.post("/preview", response_model=SegmentCount)
async def preview_segment(
    body: SegmentPreview, session: SessionDep, _: SegmentReader
) -> SegmentCount:
    """How many live members the rules select right now, without saving them."""
    return await segment_service.count(session, body.rules)


@segments.get("", response_model=SegmentPage)
async def list_segments(
    session: SessionDep, _: SegmentReader, cursor: Cursor = None, limit: Limit = 50
) -> SegmentPage:
    rows = await SegmentRepository(session).page(_after(cursor), limit + 1)
    return SegmentPage(
        items=[SegmentRead.model_validate(s) for s in rows[:limit]],
        next_cursor=_next([s.id for s in rows], limit),
    )


@segments.get("/{segment_id}", response_model=SegmentRead)
async def get_segment(segment_id: str, session: SessionDep, _: SegmentReader) -> SegmentRead:
    return SegmentRead.model_validate(await segment_service.get(session, segment_id))


@segments.patch("/{segment_id}", response_model=SegmentRead)
async def update_segment(
    segment_id: str, body: SegmentUpdate, session: SessionDep, _: SegmentWriter
) -> SegmentRead:
    segment = await segment_service.get(session, segment_id)
    return SegmentRead.model_validate(await segment_service.update(session, segment, body))


@segments.get("/{segment_id}/count", response_model=SegmentCount)
async def count_segment(segment_id: str, session: SessionDep, _: SegmentReader) -> SegmentCount:
    segment = await segment_service.get(session, segment_id)
    return await segment_service.count(session, segment_service.rule_of(segment))


@segments.get("/{segment_id}/members", response_model=MemberPage)
async def segment_members(
    segment_id: str,
    session: SessionDep,
    _: SegmentReader,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> MemberPage:
    """The segment's live members, evaluated now, by id (no contact details)."""
    segment = await segment_service.get(session, segment_id)
    rows = await segment_service.members(session, segment, _after(cursor), limit + 1)
    return MemberPage(
        items=[MemberCard.model_validate(m) for m in rows[:limit]],
        next_cursor=_next([m.id for m in rows], limit),
    )


@segments.get(
    "/{segment_id}/members/{member_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"description": "The member is not in the segment"}},
)
async def segment_contains(
    segment_id: str, member_id: str, session: SessionDep, _: SegmentReader
) -> Response:
    """204 if the member is in the segment now, 404 if not: campaigns and rewards ask this."""
    segment = await segment_service.get(session, segment_id)
    if not await segment_service.contains(session, segment, member_id):
        raise NotInSegment(f"Member {member_id} is not in segment {segment_id}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- internal: reached by the gateway only, never proxied -----------------------------------

internal = APIRouter(
    prefix="/internal/v1/members", tags=["internal"], route_class=TransactionalRoute
)


@internal.post("/authenticate", response_model=AuthenticatedMember, include_in_schema=False)
async def authenticate_member(
    body: Credentials, session: SessionDep, service: Members, _: Gatekeeper
) -> AuthenticatedMember:
    """Check a member's password for the gateway's ``POST /v1/auth/token``."""
    return await service.authenticate(session, body)


routers = [members, communities, segments, internal]
