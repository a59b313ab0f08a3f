"""What the webhooks service subscribes to: every registered event type.

Every handler records deliveries (in the consumer's transaction, made
idempotent by the inbox and by the (endpoint, event) unique key); the
dispatcher sends them later, outside any transaction, woken by the commit.
A run of events is recorded in one statement (``Batched``): one INSERT per
consumer batch rather than one per event. ``api_key.revoked`` first disables
the endpoints the partner registered with that key.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.webhooks.service import webhook_service
from shared.consumer import Batched, ConsumedEvent, Subscription
from shared.events import REGISTRY
from shared.events.contracts.gateway import ApiKeyRevoked


async def on_events(session: AsyncSession, events: list[ConsumedEvent]) -> None:
    await webhook_service.record_events(session, [event.envelope for event in events])


async def on_api_key_revoked(session: AsyncSession, event: ConsumedEvent) -> None:
    data = event.data
    assert isinstance(data, ApiKeyRevoked)
    await webhook_service.disable_endpoints_of(
        session, data.principal_subject, f"API key {data.name!r} ({data.key_id}) was revoked"
    )
    await webhook_service.record_event(session, event.envelope)


on_event = Batched(on_events)

SUBSCRIPTIONS: dict[str, Subscription] = {
    **dict.fromkeys(sorted(REGISTRY), on_event),
    "api_key.revoked": on_api_key_revoked,
}
