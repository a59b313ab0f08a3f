from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.content.api import router
from services.content.consumers import SUBSCRIPTIONS
from services.content.settings import ContentSettings
from shared.app import create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: ContentSettings | None = None, *, run_background: bool = True) -> FastAPI:
    return create_service_app(
        settings or ContentSettings(),
        title="Content",
        description="Posts of every kind, content calendar, interactions, moderation, PII masking.",
        routers=[router],
        migrations=MIGRATIONS,
        subscriptions=SUBSCRIPTIONS,
        run_background=run_background,
    )
