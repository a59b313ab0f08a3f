from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.content.api import router
from services.content.consumers import SUBSCRIPTIONS
from services.content.jobs import publish_job
from services.content.moderation_api import router as moderation_router
from services.content.settings import ContentSettings
from shared.app import create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: ContentSettings | None = None, *, run_background: bool = True) -> FastAPI:
    settings = settings or ContentSettings()
    return create_service_app(
        settings,
        title="Content",
        description="Posts of every kind, content calendar, interactions, moderation, PII masking.",
        routers=[router, moderation_router],
        migrations=MIGRATIONS,
        subscriptions=SUBSCRIPTIONS,
        jobs=[publish_job(settings.publish_interval_s)],
        run_background=run_background,
    )
