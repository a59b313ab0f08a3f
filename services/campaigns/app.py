from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.campaigns.api import router
from services.campaigns.consumers import SUBSCRIPTIONS
from services.campaigns.jobs import lifecycle_job
from services.campaigns.members_client import MembersClient
from services.campaigns.service import CampaignService
from services.campaigns.settings import CampaignsSettings
from shared.app import ServiceRuntime, create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(
    settings: CampaignsSettings | None = None,
    *,
    run_background: bool = True,
    members_client: MembersClient | None = None,
) -> FastAPI:
    """``members_client`` replaces the HTTP client of the members service (tests inject one)."""
    settings = settings or CampaignsSettings()
    service = CampaignService(members=members_client)

    async def start(runtime: ServiceRuntime) -> None:
        if service.members is None:
            service.members = MembersClient(
                runtime.tokens, base_url=settings.members_url, timeout_s=settings.members_timeout_s
            )

    async def stop(runtime: ServiceRuntime) -> None:
        if service.members is not None and members_client is None:
            await service.members.close()
            service.members = None

    job = lifecycle_job(service, settings.lifecycle_interval_s)
    app = create_service_app(
        settings,
        title="Campaigns",
        description="Check-in challenges, referrals, verifiable lotteries, UGC contests.",
        routers=[router],
        migrations=MIGRATIONS,
        subscriptions=SUBSCRIPTIONS,
        jobs=[job],
        on_startup=[start],
        on_shutdown=[stop],
        run_background=run_background,
    )
    app.state.campaign_service = service
    app.state.lifecycle_job = job
    return app
