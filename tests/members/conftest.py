"""A members service per test (no background tasks) and helpers to fill it."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from services.members.app import create_app
from services.members.settings import MembersSettings
from shared.app import ServiceRuntime
from shared.auth import Role
from shared.db import outbox_table
from shared.events.envelope import CloudEvent
from tests.conftest import Databases, auth, running

_serial = itertools.count(1)


@pytest.fixture
async def members(databases: Databases) -> AsyncIterator[httpx.AsyncClient]:
    settings = MembersSettings.model_validate(
        {"database_url": await databases.new("members"), "log_json": False, "referral_daily_cap": 3}
    )
    app = create_app(settings, run_background=False)
    async with running(app) as client:
        client.app_runtime = app.state.runtime  # type: ignore[attr-defined]
        yield client


def runtime_of(client: httpx.AsyncClient) -> ServiceRuntime:
    runtime: ServiceRuntime = client.app_runtime  # type: ignore[attr-defined]
    return runtime


async def outbox_events(client: httpx.AsyncClient, type_: str | None = None) -> list[CloudEvent]:
    async with runtime_of(client).db.session() as session:
        rows = (
            await session.execute(select(outbox_table.c.payload).order_by(outbox_table.c.id))
        ).scalars()
        found = [CloudEvent.from_json(row) for row in rows]
    return [e for e in found if type_ is None or e.type == type_]


async def register(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    n = next(_serial)
    body = {"nickname": f"fan{n}", "email": f"fan{n}@example.com", **fields}
    response = await client.post("/v1/members", json=body)
    assert response.status_code == 201, response.text
    member: dict[str, Any] = response.json()
    return member


def as_member(member: dict[str, Any]) -> dict[str, str]:
    return auth(Role.MEMBER, subject=member["id"])


OPERATOR = auth(Role.OPERATOR, subject="ops-1")
