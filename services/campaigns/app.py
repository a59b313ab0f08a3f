from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI

from services.campaigns.api import router
from services.campaigns.consumers import SUBSCRIPTIONS
from services.campaigns.jobs import lifecycle_job, pending_entries_job
from services.campaigns.members_client import MembersClient
from services.campaigns.rewards_client import RewardsClient
from services.campaigns.service import CampaignService
from services.campaigns.settings import CampaignsSettings
from shared.app import ServiceRuntime, create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(
    settings: CampaignsSettings | None = None,
    *,
    run_background: bool = True,
    members_client: MembersClient | None = None,
    rewards_client: RewardsClient | None = None,
) -> FastAPI:
    """``members_client`` and ``rewards_client`` replace the HTTP clients of those services
    (tests inject ones on the real apps in process)."""
    settings = settings or CampaignsSettings()
    service = CampaignService(members=members_client, rewards=rewards_client)

    async def start(runtime: ServiceRuntime) -> None:
        if service.members is None:
            service.members = MembersClient(
                runtime.tokens, base_url=settings.members_url, timeout_s=settings.members_timeout_s
            )
        if service.rewards is None:
            service.rewards = RewardsClient(
                runtime.tokens, base_url=settings.rewards_url, timeout_s=settings.rewards_timeout_s
            )

    async def stop(runtime: ServiceRuntime) -> None:
        if service.members is not None and members_client is None:
            await service.members.close()
            service.members = None
        if service.rewards is not None and rewards_client is None:
            await service.rewards.close()
            service.rewards = None

    job = lifecycle_job(service, settings.lifecycle_interval_s)
    payments = pending_entries_job(
        service, settings.lifecycle_interval_s, timedelta(seconds=settings.pending_entry_retry_s)
    )
    app = create_service_app(
        settings,
        title="Campaigns",
        description="Check-in challenges, referrals, verifiable lotteries, UGC contests.",
        routers=[router],
        migrations=MIGRATIONS,
        subscriptions=SUBSCRIPTIONS,
        jobs=[job, payments],
        on_startup=[start],
        on_shutdown=[stop],
        run_background=run_background,
    )
    app.state.campaign_service = service
    app.state.lifecycle_job = job
    app.state.pending_entries_job = payments
    return app
