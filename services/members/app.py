from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.members.api import routers
from services.members.consumers import SUBSCRIPTIONS
from services.members.service import MemberService
from services.members.settings import MembersSettings
from shared.app import create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: MembersSettings | None = None, *, run_background: bool = True) -> FastAPI:
    settings = settings or MembersSettings()
    app = create_service_app(
        settings,
        title="Members",
        description="Profiles, communities, roles, segments, referrals, fan tiers, privacy.",
        routers=routers,
        migrations=MIGRATIONS,
        subscriptions=SUBSCRIPTIONS,
        run_background=run_background,
    )
    app.state.member_service = MemberService(settings)
    return app
