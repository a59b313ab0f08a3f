"""The vertical slice in-process: members -> outbox -> Tansu -> analytics -> overview."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import httpx
import pytest

from services.analytics.app import create_app as create_analytics
from services.analytics.settings import AnalyticsSettings
from services.members.app import create_app as create_members
from services.members.settings import MembersSettings
from shared.auth import Role
from shared.broker import LocalBroker
from tests.conftest import Databases, auth, eventually, running, settings_for

OPERATOR = auth(Role.OPERATOR)


@dataclass
class Slice:
    members: httpx.AsyncClient
    analytics: httpx.AsyncClient

    async def register(self, n: int) -> None:
        response = await self.members.post("/v1/members", json={"nickname": f"fan {n}"})
        assert response.status_code == 201, response.text

    async def total(self) -> int:
        response = await self.analytics.get("/v1/metrics/overview", headers=OPERATOR)
        assert response.status_code == 200, response.text
        total: int = response.json()["members"]["total"]
        return total


@pytest.fixture
async def platform(databases: Databases, broker: LocalBroker) -> AsyncIterator[Slice]:
    members = create_members(settings_for(MembersSettings, broker, await databases.new("members")))
    analytics = create_analytics(
        settings_for(AnalyticsSettings, broker, await databases.new("analytics"))
    )
    async with AsyncExitStack() as stack:
        yield Slice(
            await stack.enter_async_context(running(members)),
            await stack.enter_async_context(running(analytics)),
        )


async def test_registered_members_are_counted_by_analytics(platform: Slice) -> None:
    for n in range(3):
        await platform.register(n)
    assert await eventually(lambda: _equals(platform.total(), 3))


async def test_overview_needs_an_operator_or_a_metrics_scope(platform: Slice) -> None:
    path = "/v1/metrics/overview"
    assert (await platform.analytics.get(path)).status_code == 401
    assert (await platform.analytics.get(path, headers=auth(Role.MEMBER))).status_code == 403
    partner = auth(Role.PARTNER, scopes=frozenset({"metrics:read"}))
    assert (await platform.analytics.get(path, headers=partner)).status_code == 200


async def test_a_reversed_period_is_a_clear_422(platform: Slice) -> None:
    response = await platform.analytics.get(
        "/v1/metrics/overview?from=2026-02-01&to=2026-01-01", headers=OPERATOR
    )
    assert response.status_code == 422
    assert "must not be before" in response.json()["detail"]


async def test_events_committed_while_the_broker_is_down_all_arrive_once(
    platform: Slice, broker: LocalBroker
) -> None:
    for n in range(5):
        await platform.register(n)
    await eventually(lambda: _equals(platform.total(), 5))
    broker.stop()
    for n in range(5, 20):  # registration keeps working: the outbox holds the events
        await platform.register(n)
    broker.start()
    await eventually(lambda: _equals(platform.total(), 20), timeout_s=60)
    # Redeliveries after the restart must not count twice: still 20 a little later.
    await _settle()
    assert await platform.total() == 20


async def _equals(value: object, expected: int) -> bool:
    return await value == expected  # type: ignore[misc]


async def _settle() -> None:
    import asyncio

    await asyncio.sleep(3)
