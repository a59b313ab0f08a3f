from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.webhooks.api import router
from services.webhooks.consumers import SUBSCRIPTIONS
from services.webhooks.settings import WebhooksSettings
from shared.app import create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: WebhooksSettings | None = None, *, run_background: bool = True) -> FastAPI:
    return create_service_app(
        settings or WebhooksSettings(),
        title="Webhooks",
        description="Partner webhook endpoints and Standard Webhooks deliveries.",
        routers=[router],
        migrations=MIGRATIONS,
        subscriptions=SUBSCRIPTIONS,
        run_background=run_background,
    )
