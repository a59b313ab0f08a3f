"""Events the webhooks service publishes; their data models live in shared.events.contracts."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.webhooks.models import WebhookEndpoint
from shared.events.contracts.webhooks import WebhookEndpointDisabled
from shared.outbox import add_event

SOURCE = "/services/webhooks"


async def endpoint_disabled(session: AsyncSession, endpoint: WebhookEndpoint) -> None:
    assert endpoint.disabled_at is not None
    data = WebhookEndpointDisabled(
        endpoint_id=endpoint.id,
        url=endpoint.url,
        reason=endpoint.disabled_reason or "disabled",
        disabled_at=endpoint.disabled_at,
    )
    await add_event(session, data, subject=endpoint.id, source=SOURCE)
