"""A real local HTTP receiver, a controllable clock, and the webhooks app wired to both."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.webhooks.app import create_app
from services.webhooks.dispatcher import Dispatcher
from services.webhooks.service import webhook_service
from services.webhooks.settings import WebhooksSettings
from services.webhooks.ssrf import Resolver, system_resolver
from shared.app import ServiceRuntime
from shared.auth import Role
from shared.broker import free_port
from shared.db import utcnow
from shared.events.envelope import CloudEvent
from tests.conftest import Databases, auth, eventually, running

OPERATOR = auth(Role.OPERATOR, subject="ops-1")
Behaviour = Callable[["Received"], Awaitable[Response]]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        import json

        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


def verify_standard_webhook(secret: str, received: Received) -> bool:
    """Verified by the independent ``standardwebhooks`` package (the spec's reference library)."""
    try:
        Webhook(secret).verify(received.body, dict(received.headers))
    except WebhookVerificationError:
        return False
    return True


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1; each path answers as scripted (default 200)."""

    port: int = 0
    received: list[Received] = field(default_factory=list)
    behaviours: dict[str, Behaviour] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    def answer(self, path: str, *statuses: int, headers: dict[str, str] | None = None) -> None:
        """Answer ``path`` with these statuses in turn, then 200."""
        queue = list(statuses)

        async def scripted(_: Received) -> Response:
            status = queue.pop(0) if queue else 200
            return Response(f"status {status}", status_code=status, headers=headers)

        self.behaviours[path] = scripted

    async def handle(self, request: Request) -> Response:
        received = Received(request.url.path, dict(request.headers), await request.body())
        self.received.append(received)
        behaviour = self.behaviours.get(received.path)
        if behaviour is None:
            return Response("ok")
        return await behaviour(received)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    recv = Receiver(port=free_port())
    app = Starlette(routes=[Route("/{path:path}", recv.handle, methods=["POST"])])
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=recv.port,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, timeout_s=10)
    yield recv
    server.should_exit = True
    await task


class Clock:
    """Real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


def webhooks_settings(database_url: str, **overrides: Any) -> WebhooksSettings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "kafka_bootstrap_servers": f"127.0.0.1:{free_port()}",
        "log_json": False,
        "allow_private_targets": True,
        "total_timeout_s": 2.0,
        "connect_timeout_s": 1.0,
        "dispatch_lease_s": 30.0,
    }
    values.update(overrides)
    return WebhooksSettings.model_validate(values)


@dataclass
class Webhooks:
    app: FastAPI
    client: httpx.AsyncClient
    clock: Clock
    dispatcher: Dispatcher

    @property
    def runtime(self) -> ServiceRuntime:
        runtime: ServiceRuntime = self.app.state.runtime
        return runtime

    async def endpoint(
        self, url: str, event_types: list[str] | None = None, **fields: Any
    ) -> dict[str, Any]:
        headers = fields.pop("headers", OPERATOR)
        response = await self.client.post(
            "/v1/webhooks/endpoints",
            json={"url": url, "event_types": event_types or ["*"], **fields},
            headers=headers,
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def publish(self, type_: str, data: dict[str, Any], subject: str = "s") -> CloudEvent:
        """What the consumer does with an event from the bus, in one transaction."""
        [event] = await self.publish_run([(type_, data, subject)])
        return event

    async def publish_run(self, events: list[tuple[str, dict[str, Any], str]]) -> list[CloudEvent]:
        """What the consumer does with a batch from the bus: one run, one transaction."""
        run = [
            CloudEvent(source="/services/test", type=type_, subject=subject, data=data)
            for type_, data, subject in events
        ]
        async with self.runtime.db.session() as session:
            await webhook_service.record_events(session, run)
        return run

    async def deliveries(self, **params: Any) -> list[dict[str, Any]]:
        response = await self.client.get("/v1/webhooks/deliveries", params=params, headers=OPERATOR)
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    async def delivery(self, delivery_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/v1/webhooks/deliveries/{delivery_id}", headers=OPERATOR)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
async def webhooks(databases: Databases) -> AsyncIterator[Webhooks]:
    async with make_webhooks(await databases.new("webhooks")) as hooks:
        yield hooks


class make_webhooks:
    def __init__(
        self, database_url: str, *, resolver: Resolver = system_resolver, **overrides: Any
    ) -> None:
        self.resolver = resolver
        self.settings = webhooks_settings(database_url, **overrides)
        self.app = create_app(self.settings, run_background=False)
        self._running = running(self.app)
        self.clock = Clock()

    async def __aenter__(self) -> Webhooks:
        client = await self._running.__aenter__()
        runtime: ServiceRuntime = self.app.state.runtime
        self.dispatcher = Dispatcher(
            runtime.db,
            self.settings,
            resolver=self.resolver,
            clock=self.clock,
            rng=lambda: 0.0,
            name="test-dispatcher",
        )
        return Webhooks(self.app, client, self.clock, self.dispatcher)

    async def __aexit__(self, *exc: object) -> None:
        await self.dispatcher.close()
        await self._running.__aexit__(*exc)
