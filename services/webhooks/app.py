from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.webhooks.api import router
from services.webhooks.consumers import SUBSCRIPTIONS
from services.webhooks.dispatcher import Dispatcher
from services.webhooks.jobs import retention_job
from services.webhooks.settings import WebhooksSettings
from services.webhooks.ssrf import Resolver, system_resolver
from shared.app import ServiceRuntime, create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(
    settings: WebhooksSettings | None = None,
    *,
    run_background: bool = True,
    resolver: Resolver = system_resolver,
) -> FastAPI:
    """The webhooks service; its dispatcher is ``app.state.dispatcher``.

    With ``run_background`` the dispatcher loop runs beside the consumer; tests
    leave it off and drive ``app.state.dispatcher.run_once()`` themselves.
    """
    settings = settings or WebhooksSettings()
    dispatcher: Dispatcher | None = None

    async def start_dispatcher(runtime: ServiceRuntime) -> None:
        if run_background:
            assert dispatcher is not None
            runtime.spawn(dispatcher.run_forever(), "webhook-dispatcher")

    async def stop_dispatcher(runtime: ServiceRuntime) -> None:
        if dispatcher is not None:
            await dispatcher.close()

    app = create_service_app(
        settings,
        title="Webhooks",
        description=(
            "Partner webhook endpoints and Standard Webhooks deliveries: signed CloudEvents "
            "(`webhook-id`, `webhook-timestamp`, `webhook-signature`), retries, delivery log, "
            "replay."
        ),
        routers=[router],
        migrations=MIGRATIONS,
        subscriptions=SUBSCRIPTIONS,
        jobs=[retention_job(settings)],
        on_startup=[start_dispatcher],
        on_shutdown=[stop_dispatcher],
        run_background=run_background,
    )
    runtime: ServiceRuntime = app.state.runtime
    dispatcher = Dispatcher(runtime.db, settings, resolver=resolver)
    app.state.dispatcher = dispatcher
    return app
