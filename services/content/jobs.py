"""Scheduled jobs of the content service."""

from __future__ import annotations

from functools import partial

from services.content.service import post_service
from shared.scheduler import ScheduledJob


def publish_job(interval_s: float, batch_size: int = 500) -> ScheduledJob:
    """Publishes scheduled posts whose time has come, within ``interval_s`` of it."""
    return ScheduledJob(
        "publish-scheduled-posts",
        interval_s=interval_s,
        run=partial(post_service.publish_due, limit=batch_size),
        batch_size=batch_size,
    )
