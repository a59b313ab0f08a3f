from __future__ import annotations

from fastapi import APIRouter, Response, status

from services.members.schemas import MemberCreate, MemberPrivateRead, MemberRead
from services.members.service import member_service
from shared.auth import OptionalPrincipal
from shared.web import SessionDep, TransactionalRoute

router = APIRouter(prefix="/v1/members", tags=["members"], route_class=TransactionalRoute)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=MemberPrivateRead)
async def register_member(
    body: MemberCreate, session: SessionDep, response: Response
) -> MemberPrivateRead:
    """Register a member. Honours ``Idempotency-Key``; emits ``member.registered``."""
    member = await member_service.register(session, body)
    response.headers["Location"] = f"{router.prefix}/{member.id}"
    return MemberPrivateRead.model_validate(member)


@router.get("/{member_id}", response_model=MemberPrivateRead | MemberRead)
async def get_member(
    member_id: str, session: SessionDep, principal: OptionalPrincipal
) -> MemberPrivateRead | MemberRead:
    """A member's profile; contact details only for the member itself and operators."""
    member = await member_service.get(session, member_id)
    if principal is not None and principal.can_act_for(member.id):
        return MemberPrivateRead.model_validate(member)
    return MemberRead.model_validate(member)
