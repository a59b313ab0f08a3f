"""The vertical slice in-process: members -> outbox -> Tansu -> analytics -> overview."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from services.analytics.app import create_app as create_analytics
from services.analytics.settings import AnalyticsSettings
from services.members.app import create_app as create_members
from services.members.settings import MembersSettings
from shared.auth import Role
from shared.broker import LocalBroker
from shared.bus import ensure_topics, new_producer
from shared.events.contracts.content import PostPublished, PostViewed
from shared.events.envelope import CloudEvent
from shared.events.registry import spec_of
from shared.events.topics import CONTENT
from tests.analytics.conftest import Analytics
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


# Authorisation and period checks need no broker: the fast app without background tasks.
async def test_overview_needs_an_operator_or_a_metrics_scope(analytics: Analytics) -> None:
    path = "/v1/metrics/overview"
    client = analytics.client
    assert (await client.get(path)).status_code == 401
    assert (await client.get(path, headers=auth(Role.MEMBER))).status_code == 403
    partner = auth(Role.PARTNER, scopes=frozenset({"metrics:read"}))
    assert (await client.get(path, headers=partner)).status_code == 200


async def test_a_reversed_period_is_a_clear_422(analytics: Analytics) -> None:
    response = await analytics.client.get(
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


async def test_content_events_through_the_broker_reach_the_metrics_with_their_time(
    databases: Databases, broker: LocalBroker
) -> None:
    settings = settings_for(AnalyticsSettings, broker, await databases.new("analytics"))
    published_at = datetime(2026, 3, 2, 12, tzinfo=UTC)
    post = PostPublished(
        post_id=str(uuid.uuid4()),
        community_id="club",
        author_id=str(uuid.uuid4()),
        author_kind="member",
        post_type="article",
        published_at=published_at,
    )
    view = PostViewed(
        post_id=post.post_id,
        community_id="club",
        member_id=str(uuid.uuid4()),
        post_author_id=post.author_id,
        viewed_at=published_at + timedelta(minutes=5),
    )
    await ensure_topics(settings, [CONTENT.name])
    producer = new_producer(settings, client_id="content-test")
    await producer.start()
    try:
        for data in (post, view, view):  # the view is sent twice as one event: counted once
            envelope = CloudEvent(
                id=_VIEW_ID if data is view else str(uuid.uuid4()),
                source="/services/content",
                type=spec_of(data).name,
                subject=post.post_id,
                data=data.model_dump(mode="json"),
            )
            await producer.send_and_wait(
                CONTENT.name, envelope.to_json(), key=post.post_id.encode()
            )
    finally:
        await producer.stop()

    async with running(create_analytics(settings)) as client:

        async def seen() -> dict[str, object] | None:
            response = await client.get(f"/v1/metrics/content/{post.post_id}", headers=OPERATOR)
            body: dict[str, object] = response.json()
            return body if response.status_code == 200 and body["views"] == 1 else None

        body = await eventually(seen)
        assert body["author_id"] == post.author_id
        assert str(body["as_of"]).startswith("2026-03-02T12:05:00")


_VIEW_ID = str(uuid.uuid4())


async def _equals(value: object, expected: int) -> bool:
    return await value == expected  # type: ignore[misc]


async def _settle() -> None:
    import asyncio

    await asyncio.sleep(3)
