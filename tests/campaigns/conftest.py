"""A campaigns service per test (no background tasks), a clock the test moves, and helpers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from services.campaigns.app import create_app
from services.campaigns.members_client import MembersClient
from services.campaigns.rewards_client import RewardsClient
from services.campaigns.service import CampaignService
from services.campaigns.settings import CampaignsSettings
from shared.app import ServiceRuntime
from shared.auth import Role
from shared.db import outbox_table
from shared.events.contracts import content, members
from shared.events.envelope import CloudEvent
from shared.scheduler import ScheduledJob, run_once
from tests.conftest import Databases, auth, deliver, record_of, running

# 10:00 UTC is 18:00 in Shanghai: the same local day for a few hours either way.
START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
OPERATOR = auth(Role.OPERATOR, subject="ops-1")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class Harness:
    """The running app, its client, and handles on its runtime, service and clock."""

    def __init__(self, client: httpx.AsyncClient, app: Any, clock: Clock) -> None:
        self.client = client
        self.app = app
        self.clock = clock
        self.community_id = str(uuid.uuid4())

    @property
    def runtime(self) -> ServiceRuntime:
        runtime: ServiceRuntime = self.app.state.runtime
        return runtime

    @property
    def service(self) -> CampaignService:
        service: CampaignService = self.app.state.campaign_service
        return service

    @property
    def job(self) -> ScheduledJob:
        job: ScheduledJob = self.app.state.lifecycle_job
        return job

    async def tick(self) -> int:
        return await run_once(self.runtime.db, self.job)

    async def event(self, data: Any, subject: str) -> None:
        await deliver(self.runtime, record_of(data, subject))

    async def community(self, community_id: str | None = None, tz: str = "Asia/Shanghai") -> str:
        cid = community_id or self.community_id
        await self.event(
            members.CommunityCreated(
                community_id=cid,
                name="Fans",
                owner_id=str(uuid.uuid4()),
                visibility="public",
                timezone=tz,
                created_at=self.clock.now,
            ),
            cid,
        )
        return cid

    async def member(
        self, role: str = "member", community_id: str | None = None, member_id: str | None = None
    ) -> str:
        member_id = member_id or str(uuid.uuid4())
        await self.event(
            members.MemberJoinedCommunity(
                community_id=community_id or self.community_id,
                member_id=member_id,
                role=role,
                joined_at=self.clock.now,
            ),
            member_id,
        )
        return member_id

    async def post(self, author_id: str, community_id: str | None = None) -> str:
        post_id = str(uuid.uuid4())
        await self.event(
            content.PostPublished(
                post_id=post_id,
                community_id=community_id or self.community_id,
                author_id=author_id,
                author_kind="member",
                post_type="image_text",
                published_at=self.clock.now,
            ),
            post_id,
        )
        return post_id

    async def create(self, type_: str, rules: dict[str, Any], **fields: Any) -> dict[str, Any]:
        body = {
            "name": f"{type_} campaign",
            "type": type_,
            "objective": "engagement",
            "community_id": self.community_id,
            "starts_at": START.isoformat(),
            "ends_at": (START + timedelta(days=21)).isoformat(),
            "rules": rules,
            **fields,
        }
        response = await self.client.post("/v1/campaigns", json=body, headers=OPERATOR)
        assert response.status_code == 201, response.text
        campaign: dict[str, Any] = response.json()
        return campaign

    async def active(self, type_: str, rules: dict[str, Any], **fields: Any) -> dict[str, Any]:
        campaign = await self.create(type_, rules, **fields)
        launched = await self.client.post(
            f"/v1/campaigns/{campaign['id']}/launch", headers=OPERATOR
        )
        assert launched.status_code == 200, launched.text
        assert launched.json()["status"] == "active"
        result: dict[str, Any] = launched.json()
        return result

    async def post_as(self, member_id: str, path: str, body: Any = None) -> httpx.Response:
        return await self.client.post(path, json=body, headers=auth(Role.MEMBER, member_id))

    async def events(self, type_: str | None = None) -> list[CloudEvent]:
        async with self.runtime.db.session() as session:
            rows = (
                await session.execute(select(outbox_table.c.payload).order_by(outbox_table.c.id))
            ).scalars()
            found = [CloudEvent.from_json(row) for row in rows]
        return [e for e in found if type_ is None or e.type == type_]


async def start_campaigns(
    url: str,
    clock: Clock,
    members_client: MembersClient | None = None,
    rewards_client: RewardsClient | None = None,
) -> tuple[Any, Any]:
    settings = CampaignsSettings.model_validate({"database_url": url, "log_json": False})
    app = create_app(
        settings,
        run_background=False,
        members_client=members_client,
        rewards_client=rewards_client,
    )
    app.state.campaign_service.clock = clock
    return app, running(app)


@pytest.fixture
async def harness(databases: Databases) -> AsyncIterator[Harness]:
    clock = Clock(START + timedelta(minutes=1))
    app, context = await start_campaigns(await databases.new("campaigns"), clock)
    async with context as client:
        h = Harness(client, app, clock)
        await h.community()
        yield h
