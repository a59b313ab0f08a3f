"""A rewards service on a real database per lane; events arrive through the real consumer code."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka.structs import ConsumerRecord
from sqlalchemy import select

from services.rewards.app import create_app
from services.rewards.redemptions import RedemptionDesk
from services.rewards.service import RewardsService
from services.rewards.settings import RewardsSettings
from shared.app import ServiceRuntime
from shared.auth import Role
from shared.db import outbox_table
from shared.events.contracts.content import ReactionAdded
from shared.events.envelope import CloudEvent
from shared.events.registry import EventData, spec_of
from tests.conftest import Databases, auth, running

OPERATOR = auth(Role.OPERATOR, "operator-1")


def record_of(data: EventData, event_id: str | None = None, offset: int = 0) -> ConsumerRecord:
    spec = spec_of(data)
    envelope = CloudEvent(
        id=event_id or str(uuid.uuid4()),
        source="/services/test",
        type=spec.name,
        subject="test",
        data=data.model_dump(mode="json"),
    )
    value = envelope.to_json()
    return ConsumerRecord(
        topic=spec.topic.name,
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=b"test",
        value=value,
        checksum=None,
        serialized_key_size=4,
        serialized_value_size=len(value),
        headers=[],
    )


def like(author_id: str, *, liker: str | None = None, community_id: str = "c-1") -> ReactionAdded:
    return ReactionAdded(
        post_id=str(uuid.uuid4()),
        community_id=community_id,
        member_id=liker or str(uuid.uuid4()),
        kind="like",
        post_author_id=author_id,
        reacted_at=datetime.now(UTC),
    )


@dataclass
class Rewards:
    client: httpx.AsyncClient
    runtime: ServiceRuntime
    service: RewardsService
    desk: RedemptionDesk

    async def deliver(self, data: EventData, event_id: str | None = None) -> None:
        """Hand one event to the consumer as the broker would: envelope, inbox and all."""
        await self.runtime.consumer.handle(record_of(data, event_id))

    async def rule(self, event_type: str, points: int, **extra: Any) -> dict[str, Any]:
        body = {"name": f"{event_type} pays", "event_type": event_type, "points": points, **extra}
        response = await self.client.post("/v1/earning-rules", json=body, headers=OPERATOR)
        assert response.status_code == 201, response.text
        rule: dict[str, Any] = response.json()
        return rule

    async def credit(self, member_id: str, amount: int) -> None:
        response = await self.client.post(
            f"/v1/accounts/{member_id}/adjustments",
            json={"amount": amount, "reason": "test credit"},
            headers=OPERATOR,
        )
        assert response.status_code == 201, response.text

    async def account(self, member_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/v1/accounts/{member_id}", headers=OPERATOR)
        assert response.status_code == 200, response.text
        account: dict[str, Any] = response.json()
        return account

    async def audit(self) -> dict[str, Any]:
        response = await self.client.get("/v1/accounts/audit", headers=OPERATOR)
        assert response.status_code == 200, response.text
        audit: dict[str, Any] = response.json()
        return audit

    async def item(self, points_price: int, stock: int | None, **extra: Any) -> dict[str, Any]:
        body = {"name": "Mug", "kind": "physical", "points_price": points_price, "stock": stock}
        response = await self.client.post("/v1/catalog", json={**body, **extra}, headers=OPERATOR)
        assert response.status_code == 201, response.text
        item: dict[str, Any] = response.json()
        return item

    async def redeem(
        self, who: str, item_id: str, key: str | None = None, **extra: Any
    ) -> httpx.Response:
        headers = {**auth(Role.MEMBER, who), "Idempotency-Key": key or str(uuid.uuid4())}
        return await self.client.post(
            "/v1/redemptions", json={"item_id": item_id, **extra}, headers=headers
        )

    async def events(self, type_: str | None = None) -> list[CloudEvent]:
        async with self.runtime.db.session() as session:
            rows = (await session.execute(select(outbox_table.c.payload))).scalars().all()
        found = [CloudEvent.from_json(row) for row in rows]
        return [e for e in found if type_ is None or e.type == type_]


RewardsFactory = Callable[..., Awaitable[Rewards]]


@pytest.fixture
async def make_rewards(databases: Databases) -> AsyncIterator[RewardsFactory]:
    async with AsyncExitStack() as stack:

        async def make(*, run_background: bool = False, **overrides: Any) -> Rewards:
            settings = RewardsSettings.model_validate(
                {"database_url": await databases.new("rewards"), "log_json": False, **overrides}
            )
            app = create_app(settings, run_background=run_background)
            client = await stack.enter_async_context(running(app))
            return Rewards(client, app.state.runtime, app.state.rewards, app.state.redemptions)

        yield make


@pytest.fixture
async def rewards(make_rewards: RewardsFactory) -> Rewards:
    return await make_rewards()
