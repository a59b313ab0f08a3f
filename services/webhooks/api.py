"""Webhooks: partner webhook endpoints and Standard Webhooks deliveries."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response, status

from services.webhooks.models import WebhookDelivery, WebhookEndpoint
from services.webhooks.schemas import (
    AttemptRead,
    DeliveryDetail,
    DeliveryPage,
    DeliveryRead,
    EndpointCreate,
    EndpointPage,
    EndpointRead,
    EndpointUpdate,
    EndpointWithSecret,
    ReplayRange,
    ReplayResult,
    SecretRotate,
)
from services.webhooks.service import webhook_service
from services.webhooks.settings import WebhooksSettings
from shared.auth import CurrentPrincipal, Principal, Role, require_scope
from shared.errors import Forbidden
from shared.web import SessionDep, TransactionalRoute, get_runtime

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], route_class=TransactionalRoute)


async def reader(principal: CurrentPrincipal) -> Principal:
    """Operators see everything; a partner with ``webhooks:read`` or ``:write`` sees its own."""
    if principal.is_operator:
        return principal
    if principal.role is Role.PARTNER and (
        principal.has_scope("webhooks:read") or principal.has_scope("webhooks:write")
    ):
        return principal
    raise Forbidden("This action needs the scope 'webhooks:read'")


Reader = Annotated[Principal, Depends(reader)]
Writer = Annotated[Principal, Depends(require_scope("webhooks:write"))]
Limit = Annotated[int, Query(ge=1, le=200)]


async def settings_of(request: Request) -> WebhooksSettings:
    settings = get_runtime(request).settings
    assert isinstance(settings, WebhooksSettings)
    return settings


Settings = Annotated[WebhooksSettings, Depends(settings_of)]


def with_secret(endpoint: WebhookEndpoint, secret: str) -> EndpointWithSecret:
    """The endpoint and its plaintext secret, which exists only in this response."""
    return EndpointWithSecret(**EndpointRead.model_validate(endpoint).model_dump(), secret=secret)


def delivery_read(delivery: WebhookDelivery) -> DeliveryRead:
    read = DeliveryRead.model_validate(delivery)
    read.payload_purged = delivery.payload is None
    return read


@router.post("/endpoints", status_code=status.HTTP_201_CREATED, response_model=EndpointWithSecret)
async def create_endpoint(
    body: EndpointCreate,
    session: SessionDep,
    principal: Writer,
    settings: Settings,
    response: Response,
) -> EndpointWithSecret:
    """Register an endpoint. Its signing secret is in this response (and on rotation) only."""
    endpoint, secret = await webhook_service.create_endpoint(session, principal, body, settings)
    response.headers["Location"] = f"{router.prefix}/endpoints/{endpoint.id}"
    return with_secret(endpoint, secret)


@router.get("/endpoints", response_model=EndpointPage)
async def list_endpoints(
    session: SessionDep, principal: Reader, cursor: str | None = None, limit: Limit = 50
) -> EndpointPage:
    items, next_cursor = await webhook_service.list_endpoints(session, principal, cursor, limit)
    return EndpointPage(
        items=[EndpointRead.model_validate(e) for e in items], next_cursor=next_cursor
    )


@router.get("/endpoints/{endpoint_id}", response_model=EndpointRead)
async def get_endpoint(endpoint_id: str, session: SessionDep, principal: Reader) -> EndpointRead:
    return EndpointRead.model_validate(
        await webhook_service.get_endpoint(session, principal, endpoint_id)
    )


@router.patch("/endpoints/{endpoint_id}", response_model=EndpointRead)
async def update_endpoint(
    endpoint_id: str,
    body: EndpointUpdate,
    session: SessionDep,
    principal: Writer,
    settings: Settings,
) -> EndpointRead:
    """Change an endpoint; ``enabled: true`` re-enables one that was disabled."""
    endpoint = await webhook_service.update_endpoint(
        session, principal, endpoint_id, body, settings
    )
    return EndpointRead.model_validate(endpoint)


@router.delete("/endpoints/{endpoint_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_endpoint(endpoint_id: str, session: SessionDep, principal: Writer) -> Response:
    """Delete an endpoint with its delivery log."""
    await webhook_service.delete_endpoint(session, principal, endpoint_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/endpoints/{endpoint_id}/rotate-secret", response_model=EndpointWithSecret)
async def rotate_secret(
    endpoint_id: str,
    session: SessionDep,
    principal: Writer,
    settings: Settings,
    body: SecretRotate | None = None,
) -> EndpointWithSecret:
    """A new signing secret; during ``overlap_s`` every delivery carries both signatures."""
    overlap = timedelta(seconds=(body or SecretRotate()).overlap_s)
    endpoint, secret = await webhook_service.rotate_secret(
        session, principal, endpoint_id, overlap, settings
    )
    return with_secret(endpoint, secret)


@router.post(
    "/endpoints/{endpoint_id}/test",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeliveryRead,
)
async def send_test_event(endpoint_id: str, session: SessionDep, principal: Writer) -> DeliveryRead:
    """Queue a ``webhook.test`` event for the endpoint; follow it in the delivery log."""
    return delivery_read(await webhook_service.send_test(session, principal, endpoint_id))


@router.post("/endpoints/{endpoint_id}/replay", response_model=ReplayResult)
async def replay_failed(
    endpoint_id: str, body: ReplayRange, session: SessionDep, principal: Writer
) -> ReplayResult:
    """Send every failed delivery recorded in ``[since, until)`` again, same ``webhook-id``."""
    replayed = await webhook_service.replay_range(
        session, principal, endpoint_id, body.since, body.until
    )
    return ReplayResult(replayed=replayed)


@router.get("/deliveries", response_model=DeliveryPage)
async def list_deliveries(
    session: SessionDep,
    principal: Reader,
    endpoint_id: str | None = None,
    status: Literal["pending", "succeeded", "failed", "dropped"] | None = None,
    cursor: str | None = None,
    limit: Limit = 50,
) -> DeliveryPage:
    """The delivery log, newest first."""
    items, next_cursor = await webhook_service.list_deliveries(
        session, principal, endpoint_id=endpoint_id, status=status, cursor=cursor, limit=limit
    )
    return DeliveryPage(items=[delivery_read(d) for d in items], next_cursor=next_cursor)


@router.get("/deliveries/{delivery_id}", response_model=DeliveryDetail)
async def get_delivery(delivery_id: str, session: SessionDep, principal: Reader) -> DeliveryDetail:
    """A delivery with every attempt: status, latency, response snippet, error."""
    delivery, attempts = await webhook_service.get_delivery(session, principal, delivery_id)
    return DeliveryDetail(
        **delivery_read(delivery).model_dump(),
        attempts_log=[AttemptRead.model_validate(a) for a in attempts],
    )


@router.post("/deliveries/{delivery_id}/replay", response_model=DeliveryRead)
async def replay_delivery(delivery_id: str, session: SessionDep, principal: Writer) -> DeliveryRead:
    """Send one settled delivery again (same ``webhook-id``), with a fresh retry schedule."""
    return delivery_read(await webhook_service.replay_delivery(session, principal, delivery_id))
