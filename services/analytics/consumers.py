"""What the analytics service subscribes to: ``{event type: handler}``."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics.service import analytics_service
from shared.consumer import ConsumedEvent, Handler
from shared.events.contracts.members import MemberRegistered


async def on_member_registered(session: AsyncSession, event: ConsumedEvent) -> None:
    data: MemberRegistered = event.data
    await analytics_service.record_registration(session, data.registered_at)


SUBSCRIPTIONS: dict[str, Handler] = {
    "member.registered": on_member_registered,
}
