from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.members.api import router
from services.members.consumers import SUBSCRIPTIONS
from services.members.settings import MembersSettings
from shared.app import create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: MembersSettings | None = None, *, run_background: bool = True) -> FastAPI:
    return create_service_app(
        settings or MembersSettings(),
        title="Members",
        description="Profiles, communities, roles, segments, referrals, fan tiers, privacy.",
        routers=[router],
        migrations=MIGRATIONS,
        subscriptions=SUBSCRIPTIONS,
        run_background=run_background,
    )
