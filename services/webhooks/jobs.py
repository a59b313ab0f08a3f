"""Periodic jobs of the webhooks service."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.webhooks.repository import DeliveryRepository
from services.webhooks.settings import WebhooksSettings
from shared.db import utcnow
from shared.scheduler import ScheduledJob

RETENTION_BATCH = 500


def retention_job(settings: WebhooksSettings) -> ScheduledJob:
    """Deletes the delivery log (attempts, settled deliveries) past ``retention_days``.

    Deleting is idempotent, so replicas running it at once only share the work.
    """

    async def purge(session: AsyncSession) -> int:
        cutoff = utcnow() - timedelta(days=settings.retention_days)
        return await DeliveryRepository(session).purge_older_than(cutoff, RETENTION_BATCH)

    return ScheduledJob("webhooks-retention", 3600.0, purge, batch_size=RETENTION_BATCH)
