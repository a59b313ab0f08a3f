"""A content service on a real database per lane, fed by real consumer handling of member events."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka.structs import ConsumerRecord
from sqlalchemy import select

from services.content.app import create_app
from services.content.settings import ContentSettings
from shared.app import ServiceRuntime
from shared.auth import Role
from shared.db import outbox_table
from shared.events.contracts.members import CommunityCreated, MemberJoinedCommunity
from shared.events.envelope import CloudEvent
from shared.events.registry import EventData, spec_of
from tests.conftest import Databases, auth, running


def article(community_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "type": "article",
        "community_id": community_id,
        "title": "Latte art basics",
        "body": "Steam the milk to 60 degrees.",
        **overrides,
    }


async def deliver(runtime: ServiceRuntime, data: EventData, event_id: str | None = None) -> None:
    """Hand one event to the service's consumer as the broker would: envelope, inbox and all."""
    spec = spec_of(data)
    envelope = CloudEvent(
        id=event_id or str(uuid.uuid4()),
        source="/services/members",
        type=spec.name,
        subject="test",
        data=data.model_dump(mode="json"),
    )
    value = envelope.to_json()
    record = ConsumerRecord(
        topic=spec.topic.name,
        partition=0,
        offset=0,
        timestamp=0,
        timestamp_type=0,
        key=b"test",
        value=value,
        checksum=None,
        serialized_key_size=4,
        serialized_value_size=len(value),
        headers=[],
    )
    await runtime.consumer.handle(record)


@dataclass
class Content:
    """One test's view of a service that other tests of the module share.

    Each test works in communities of its own; ``events`` shows only theirs.
    """

    client: httpx.AsyncClient
    runtime: ServiceRuntime
    communities: set[str] = field(default_factory=set)

    async def community(self, owner_id: str | None = None, timezone: str = "Asia/Shanghai") -> str:
        community_id = str(uuid.uuid4())
        self.communities.add(community_id)
        await deliver(
            self.runtime,
            CommunityCreated(
                community_id=community_id,
                name="Coffee club",
                owner_id=owner_id or str(uuid.uuid4()),
                visibility="public",
                timezone=timezone,
                created_at=datetime.now(UTC),
            ),
        )
        return community_id

    async def join(
        self, community_id: str, member_id: str | None = None, role: str = "member"
    ) -> str:
        member_id = member_id or str(uuid.uuid4())
        await deliver(
            self.runtime,
            MemberJoinedCommunity(
                community_id=community_id,
                member_id=member_id,
                role=role,
                joined_at=datetime(2025, 1, 1, tzinfo=UTC),
            ),
        )
        return member_id

    async def member_in(
        self, community_id: str, role: str = "member"
    ) -> tuple[str, dict[str, str]]:
        member_id = await self.join(community_id, role=role)
        return member_id, auth(Role.MEMBER, member_id)

    async def post(
        self, headers: dict[str, str], body: dict[str, Any], expect: int = 201
    ) -> dict[str, Any]:
        response = await self.client.post("/v1/posts", json=body, headers=headers)
        assert response.status_code == expect, response.text
        result: dict[str, Any] = response.json()
        return result

    async def get_post(self, post_id: str, headers: dict[str, str]) -> dict[str, Any]:
        response = await self.client.get(f"/v1/posts/{post_id}", headers=headers)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def events(self, type_: str | None = None) -> list[CloudEvent]:
        async with self.runtime.db.session() as session:
            query = select(outbox_table.c.payload).order_by(outbox_table.c.id)
            if type_ is not None:
                query = query.where(outbox_table.c.type == type_)
            rows = (await session.execute(query)).scalars().all()
        events = [CloudEvent.from_json(row) for row in rows]
        return [e for e in events if e.data.get("community_id") in self.communities]


async def start(databases: Databases) -> AsyncIterator[tuple[httpx.AsyncClient, ServiceRuntime]]:
    settings = ContentSettings.model_validate(
        {"database_url": await databases.new("content"), "log_json": False}
    )
    app = create_app(settings, run_background=False)
    async with running(app) as client:
        yield client, app.state.runtime


@pytest.fixture(scope="module")
async def shared_service(
    db_lane: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[httpx.AsyncClient, ServiceRuntime]]:
    """One service and database per module and lane: creating a PostgreSQL database per
    test would cost more than the tests themselves."""
    databases = Databases(db_lane, tmp_path_factory.mktemp("content"))
    try:
        async for service in start(databases):
            yield service
    finally:
        await databases.drop_all()


@pytest.fixture
async def content(shared_service: tuple[httpx.AsyncClient, ServiceRuntime]) -> Content:
    return Content(*shared_service)


@pytest.fixture
async def own_content(databases: Databases) -> AsyncIterator[Content]:
    """A service on a database of the test's own, for tests that look at every row."""
    async for client, runtime in start(databases):
        yield Content(client, runtime)
