from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.analytics.api import router
from services.analytics.consumers import SUBSCRIPTIONS
from services.analytics.dashboard import router as dashboard_router
from services.analytics.settings import AnalyticsSettings
from shared.app import create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(
    settings: AnalyticsSettings | None = None, *, run_background: bool = True
) -> FastAPI:
    return create_service_app(
        settings or AnalyticsSettings(),
        title="Analytics",
        description="Growth, activity, interaction, funnels, retention and KOL metrics.",
        routers=[router, dashboard_router],
        migrations=MIGRATIONS,
        subscriptions=SUBSCRIPTIONS,
        run_background=run_background,
    )
