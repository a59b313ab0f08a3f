from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.middleware import Middleware
from starlette.responses import Response

from services.gateway.api import router
from services.gateway.openapi import MergedOpenAPI
from services.gateway.proxy import Gateway, ProxyPaths
from services.gateway.ratelimit import rate_limiter
from services.gateway.service import gateway_service
from services.gateway.settings import GatewaySettings
from shared.app import ServiceRuntime, create_service_app
from shared.auth import Role
from shared.events.catalog import build_catalog
from shared.web import get_runtime

MIGRATIONS = Path(__file__).parent / "migrations"
TITLE = "Community platform API"
DESCRIPTION = (
    "The public API of the community marketing platform: members, communities, content, "
    "campaigns, rewards, analytics and partner webhooks. Errors are RFC 9457 problem+json; "
    "POSTs that create or spend honour `Idempotency-Key`. Events: `/v1/events/catalog`."
)
log = logging.getLogger(__name__)


def create_app(settings: GatewaySettings | None = None, *, run_background: bool = True) -> FastAPI:
    settings = settings or GatewaySettings()
    gateway = Gateway(settings, rate_limiter(settings.redis_url))

    async def bootstrap_admin(runtime: ServiceRuntime) -> None:
        if settings.admin_password is None:
            return
        async with runtime.db.session() as session:
            await gateway_service.ensure_staff(
                session, "admin", settings.admin_password.get_secret_value(), Role.OPERATOR
            )

    async def close_gateway(runtime: ServiceRuntime) -> None:
        await gateway.close()

    app = create_service_app(
        settings,
        title=TITLE,
        description=DESCRIPTION,
        routers=[router],
        migrations=MIGRATIONS,
        on_startup=[bootstrap_admin],
        on_shutdown=[close_gateway],
        run_background=run_background,
        # The services' paths bypass FastAPI's routing; OPTIONS goes upstream too.
        middleware=[Middleware(ProxyPaths, gateway=gateway)],
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.gateway = gateway

    def own_document() -> dict[str, Any]:
        return get_openapi(
            title=TITLE, version=app.version, description=DESCRIPTION, routes=app.routes
        )

    merged = MergedOpenAPI(own_document, gateway.clients, settings.openapi_cache_s)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi() -> JSONResponse:
        return JSONResponse(jsonable_encoder(await merged.document()))

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=TITLE)

    @app.get("/v1/events/catalog", tags=["events"])
    async def events_catalog() -> dict[str, Any]:
        """AsyncAPI 3.0 catalogue of every domain event (CloudEvents, structured JSON)."""
        return build_catalog()

    @app.get("/dashboard", include_in_schema=False)
    @app.get("/dashboard/static/{asset}", include_in_schema=False)
    async def dashboard(request: Request) -> Response:
        """The operators' dashboard page and its chart library, served by analytics."""
        return await gateway.forward(request, get_runtime(request))

    return app
