"""Scheduled work, exactly once across replicas (see shared.scheduler and ledger.schedule)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards.service import RewardsService
from shared.scheduler import ScheduledJob


def scheduled_jobs(rewards: RewardsService) -> list[ScheduledJob]:
    settings = rewards.settings
    batch = settings.job_batch_size

    async def release_pending(session: AsyncSession) -> int:
        return await rewards.schedule.release_due(session, batch)

    async def expire_points(session: AsyncSession) -> int:
        return await rewards.schedule.expire_due(session, batch)

    async def remind_expiring(session: AsyncSession) -> int:
        return await rewards.schedule.remind_expiring(session, batch)

    async def review_tiers(session: AsyncSession) -> int:
        return await rewards.tiers.review_due(session, batch)

    return [
        ScheduledJob("rewards.release_pending", settings.release_job_interval_s, release_pending),
        ScheduledJob("rewards.expire_points", settings.expiry_job_interval_s, expire_points),
        ScheduledJob("rewards.remind_expiring", settings.reminder_job_interval_s, remind_expiring),
        ScheduledJob("rewards.review_tiers", settings.tier_review_job_interval_s, review_tiers),
    ]
