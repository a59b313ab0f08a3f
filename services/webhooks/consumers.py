"""What the webhooks service subscribes to: every registered event type, one handler.

The handler only records deliveries (in the consumer's transaction, made
idempotent by the inbox and by the (endpoint, event) unique key); the
dispatcher sends them later, outside any transaction.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.webhooks.service import webhook_service
from shared.consumer import ConsumedEvent, Handler
from shared.events import REGISTRY


async def on_event(session: AsyncSession, event: ConsumedEvent) -> None:
    await webhook_service.record_event(session, event.envelope)


SUBSCRIPTIONS: dict[str, Handler] = dict.fromkeys(sorted(REGISTRY), on_event)
