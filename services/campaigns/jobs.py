"""Scheduled jobs of the campaigns service."""

from __future__ import annotations

from services.campaigns.service import CampaignService
from shared.scheduler import ScheduledJob

BATCH = 200


def lifecycle_job(service: CampaignService, interval_s: float) -> ScheduledJob:
    """Starts scheduled campaigns and ends active ones on time, each exactly once."""
    return ScheduledJob(
        "campaigns.lifecycle", interval_s=interval_s, run=service.advance, batch_size=BATCH
    )
