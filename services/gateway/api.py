from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, status
from fastapi.security import OAuth2PasswordRequestForm

from services.gateway.proxy import Gateway
from services.gateway.repository import StaffRepository
from services.gateway.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPage,
    ApiKeyRead,
    ApiKeyRotate,
    TokenResponse,
)
from services.gateway.service import gateway_service
from shared.auth import Principal, Role
from shared.errors import Forbidden, Unauthorized
from shared.web import SessionDep, TransactionalRoute, get_runtime


async def admitted(request: Request) -> Principal | None:
    gateway: Gateway = request.app.state.gateway
    return await gateway.admit(request, get_runtime(request))


Admitted = Annotated[Principal | None, Depends(admitted)]


async def operator(principal: Admitted) -> Principal:
    if principal is None:
        raise Unauthorized("This endpoint needs a bearer token")
    if principal.role is not Role.OPERATOR:
        raise Forbidden("Only operators manage API keys")
    return principal


Operator = Annotated[Principal, Depends(operator)]

router = APIRouter(tags=["auth"], route_class=TransactionalRoute)


class SignInForm(OAuth2PasswordRequestForm):
    """OAuth2's password grant, with what the schema must say: an empty field counts as missing."""

    def __init__(
        self,
        username: Annotated[str, Form(min_length=1, max_length=320)],
        password: Annotated[str, Form(min_length=1, max_length=1024)],
        grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
        scope: Annotated[str, Form()] = "",
    ) -> None:
        super().__init__(grant_type=grant_type, username=username, password=password, scope=scope)


@router.post("/v1/auth/token", response_model=TokenResponse)
async def issue_token(
    form: Annotated[SignInForm, Depends()],
    session: SessionDep,
    request: Request,
    _: Admitted,
) -> TokenResponse:
    """OAuth2 password grant for staff accounts (operators, moderators) and members.

    Members sign in with their e-mail or phone; the token lists the communities
    they own or moderate.
    """
    runtime = get_runtime(request)
    try:
        principal = await gateway_service.authenticate_staff(session, form.username, form.password)
    except Unauthorized:
        if await StaffRepository(session).by_username(form.username) is not None:
            raise  # a staff account with a wrong password is not a member sign-in
        gateway: Gateway = request.app.state.gateway
        principal = await gateway.authenticate_member(form.username, form.password, runtime)
    tokens = runtime.tokens
    return TokenResponse(
        access_token=tokens.issue(principal), expires_in=int(tokens.ttl.total_seconds())
    )


@router.post(
    "/v1/api-keys",
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyCreated,
    tags=["api-keys"],
)
async def create_api_key(
    body: ApiKeyCreate, session: SessionDep, principal: Operator
) -> ApiKeyCreated:
    """Create a partner API key. The key is in this response only. Honours ``Idempotency-Key``."""
    record, key = await gateway_service.create_api_key(session, principal, body)
    return ApiKeyCreated(**ApiKeyRead.model_validate(record).model_dump(), key=key)


@router.get("/v1/api-keys", response_model=ApiKeyPage, tags=["api-keys"])
async def list_api_keys(session: SessionDep, _: Operator) -> ApiKeyPage:
    keys = await gateway_service.list_api_keys(session)
    return ApiKeyPage(items=[ApiKeyRead.model_validate(k) for k in keys])


@router.post("/v1/api-keys/{key_id}/rotate", response_model=ApiKeyCreated, tags=["api-keys"])
async def rotate_api_key(
    key_id: str, session: SessionDep, _: Operator, body: ApiKeyRotate | None = None
) -> ApiKeyCreated:
    """A new secret, shown in this response only; the old one works for ``overlap_s`` more."""
    overlap = timedelta(seconds=(body or ApiKeyRotate()).overlap_s)
    record, key = await gateway_service.rotate_api_key(session, key_id, overlap)
    return ApiKeyCreated(**ApiKeyRead.model_validate(record).model_dump(), key=key)


@router.delete("/v1/api-keys/{key_id}", response_model=ApiKeyRead, tags=["api-keys"])
async def revoke_api_key(key_id: str, session: SessionDep, principal: Operator) -> ApiKeyRead:
    """Revoke the key at once; the partner's webhook endpoints are disabled too."""
    record = await gateway_service.revoke_api_key(session, key_id, principal)
    return ApiKeyRead.model_validate(record)
