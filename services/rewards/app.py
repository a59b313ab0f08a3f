from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.rewards.api import routers
from services.rewards.consumers import subscriptions
from services.rewards.jobs import scheduled_jobs
from services.rewards.redemptions import RedemptionDesk
from services.rewards.service import RewardsService
from services.rewards.settings import RewardsSettings
from shared.app import create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: RewardsSettings | None = None, *, run_background: bool = True) -> FastAPI:
    settings = settings or RewardsSettings()
    rewards = RewardsService(settings)
    app = create_service_app(
        settings,
        title="Rewards",
        description="Points ledger, earning rules, expiry, fan tiers, coupons, catalogue.",
        routers=routers,
        migrations=MIGRATIONS,
        subscriptions=subscriptions(rewards),
        jobs=scheduled_jobs(rewards),
        run_background=run_background,
    )
    app.state.rewards = rewards
    app.state.redemptions = RedemptionDesk(rewards.catalog, app.state.runtime.db, settings)
    return app
