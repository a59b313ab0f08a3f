from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.rewards.api import router
from services.rewards.consumers import SUBSCRIPTIONS
from services.rewards.settings import RewardsSettings
from shared.app import create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: RewardsSettings | None = None, *, run_background: bool = True) -> FastAPI:
    return create_service_app(
        settings or RewardsSettings(),
        title="Rewards",
        description="Points ledger, earning rules, expiry, fan tiers, coupons, catalogue.",
        routers=[router],
        migrations=MIGRATIONS,
        subscriptions=SUBSCRIPTIONS,
        run_background=run_background,
    )
