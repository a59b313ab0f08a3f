"""Scheduled jobs of the campaigns service."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.campaigns.service import CampaignService
from services.campaigns.types import lottery
from shared.scheduler import ScheduledJob

BATCH = 200


def lifecycle_job(service: CampaignService, interval_s: float) -> ScheduledJob:
    """Starts scheduled campaigns and ends active ones on time, each exactly once."""
    return ScheduledJob(
        "campaigns.lifecycle", interval_s=interval_s, run=service.advance, batch_size=BATCH
    )


def pending_entries_job(
    service: CampaignService, interval_s: float, retry_after: timedelta
) -> ScheduledJob:
    """Settles lottery entries whose points spend got no answer: confirmed or deleted."""

    async def run(session: AsyncSession) -> int:
        older_than = service.clock() - retry_after
        return await lottery.retry_pending(session, service.rewards, older_than, BATCH)

    return ScheduledJob(
        "campaigns.pending_entries", interval_s=interval_s, run=run, batch_size=BATCH
    )
