from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.analytics.api import rebuilds_router, router
from services.analytics.consumers import SUBSCRIPTIONS
from services.analytics.dashboard import router as dashboard_router
from services.analytics.rebuild import Rebuilds
from services.analytics.segments import SegmentSnapshots, SegmentSource
from services.analytics.settings import AnalyticsSettings
from shared.app import ServiceRuntime, create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(
    settings: AnalyticsSettings | None = None,
    *,
    run_background: bool = True,
    segment_source: SegmentSource | None = None,
) -> FastAPI:
    """``segment_source`` replaces the HTTP client of the members service (tests inject one)."""
    settings = settings or AnalyticsSettings()
    segments = SegmentSnapshots(segment_source, settings.segment_cache_s)

    async def start(runtime: ServiceRuntime) -> None:
        if segments.source is None:
            segments.source = SegmentSource(
                runtime.tokens, base_url=settings.members_url, timeout_s=settings.members_timeout_s
            )

    async def stop(runtime: ServiceRuntime) -> None:
        await rebuilds.stop()
        if segments.source is not None and segment_source is None:
            await segments.source.close()
            segments.source = None

    app = create_service_app(
        settings,
        title="Analytics",
        description="Growth, activity, interaction, funnels, retention and KOL metrics.",
        routers=[router, rebuilds_router, dashboard_router],
        migrations=MIGRATIONS,
        subscriptions=SUBSCRIPTIONS,
        on_startup=[start],
        on_shutdown=[stop],
        run_background=run_background,
    )
    app.state.segments = segments
    rebuilds = app.state.rebuilds = Rebuilds(app.state.runtime.db)
    return app
