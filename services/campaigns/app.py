from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.campaigns.api import router
from services.campaigns.consumers import SUBSCRIPTIONS
from services.campaigns.settings import CampaignsSettings
from shared.app import create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(
    settings: CampaignsSettings | None = None, *, run_background: bool = True
) -> FastAPI:
    return create_service_app(
        settings or CampaignsSettings(),
        title="Campaigns",
        description="Referral, check-in, UGC contest, lottery, quiz, flash sale, group buy.",
        routers=[router],
        migrations=MIGRATIONS,
        subscriptions=SUBSCRIPTIONS,
        run_background=run_background,
    )
