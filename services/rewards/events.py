"""Events the rewards service publishes; their data models live in shared.events.contracts."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from shared.events.registry import EventData
from shared.outbox import add_event, add_events

SOURCE = "/services/rewards"


async def publish(session: AsyncSession, data: EventData, *, subject: str) -> None:
    """Every rewards event is keyed by the member (or coupon) it is about."""
    await add_event(session, data, subject=subject, source=SOURCE)


async def publish_many(session: AsyncSession, items: list[tuple[EventData, str]]) -> None:
    """Several events of one transaction in one outbox statement."""
    if items:
        await add_events(session, items, source=SOURCE)
