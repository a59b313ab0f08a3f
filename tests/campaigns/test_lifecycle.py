"""Creating, launching, the scheduler's transitions, ending, settling, cancelling."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select

from services.campaigns.models import Campaign
from shared.auth import Role
from shared.scheduler import run_once
from tests.campaigns.conftest import OPERATOR, START, Clock, Harness, start_campaigns
from tests.conftest import Databases, auth

CHECKIN = {"days_required": 3}


async def test_creating_a_campaign_drafts_it_and_announces_it(harness: Harness) -> None:
    campaign = await harness.create("checkin", CHECKIN)
    assert campaign["status"] == "draft"
    assert campaign["timezone"] == "Asia/Shanghai"  # from the community replica
    assert campaign["rules"]["mode"] == "total"
    [event] = await harness.events("campaign.created")
    assert event.data["campaign_id"] == campaign["id"]
    assert event.source == "/services/campaigns"


async def test_invalid_campaign_is_a_problem_naming_the_fields_and_writes_nothing(
    harness: Harness,
) -> None:
    body = {
        "name": "",
        "type": "checkin",
        "objective": "engagement",
        "community_id": harness.community_id,
        "starts_at": START.isoformat(),
        "ends_at": (START - timedelta(days=1)).isoformat(),
        "timezone": "Mars/Olympus",
        "rules": {"days_required": 0, "surprise": 1},
    }
    response = await harness.client.post("/v1/campaigns", json=body, headers=OPERATOR)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    fields = {e["field"] for e in response.json()["errors"]}
    assert {
        "body.checkin.name",
        "body.checkin.ends_at",
        "body.checkin.timezone",
        "body.checkin.rules.days_required",
        "body.checkin.rules.surprise",
    } <= fields
    assert await harness.events() == []


async def test_members_cannot_create_campaigns_but_partners_with_the_scope_can(
    harness: Harness,
) -> None:
    body = {
        "name": "x",
        "type": "lottery",
        "objective": "awareness",
        "community_id": harness.community_id,
        "starts_at": START.isoformat(),
        "ends_at": (START + timedelta(days=1)).isoformat(),
        "rules": {"winners": 1, "prize": {"kind": "points", "points": 10}},
    }
    as_member = await harness.client.post("/v1/campaigns", json=body, headers=auth(Role.MEMBER))
    as_reader = await harness.client.post(
        "/v1/campaigns",
        json=body,
        headers=auth(Role.PARTNER, scopes=frozenset({"campaigns:read"})),
    )
    as_writer = await harness.client.post(
        "/v1/campaigns",
        json=body,
        headers=auth(Role.PARTNER, scopes=frozenset({"campaigns:write"})),
    )
    assert (as_member.status_code, as_reader.status_code, as_writer.status_code) == (403, 403, 201)


async def test_scheduler_starts_and_ends_the_campaign_on_time_once(harness: Harness) -> None:
    harness.clock.now = START - timedelta(hours=1)
    campaign = await harness.create("checkin", CHECKIN)
    path = f"/v1/campaigns/{campaign['id']}"
    launched = (await harness.client.post(f"{path}/launch", headers=OPERATOR)).json()
    assert launched["status"] == "scheduled"
    assert launched["seconds_until_start"] == 3600
    assert await harness.tick() == 0

    harness.clock.now = START
    assert await harness.tick() == 1
    assert await harness.tick() == 0
    read = (await harness.client.get(path, headers=OPERATOR)).json()
    assert read["status"] == "active"
    assert read["seconds_remaining"] == 21 * 86400

    harness.clock.now = START + timedelta(days=21)
    assert await harness.tick() == 1
    assert (await harness.client.get(path, headers=OPERATOR)).json()["status"] == "ended"
    assert len(await harness.events("campaign.started")) == 1
    [ended] = await harness.events("campaign.ended")
    assert ended.data["by"] == "schedule"


async def test_settling_twice_gives_one_settlement(harness: Harness) -> None:
    campaign = await harness.active("checkin", CHECKIN)
    path = f"/v1/campaigns/{campaign['id']}"
    early = await harness.client.post(f"{path}/settle", headers=OPERATOR)
    assert early.status_code == 409
    assert early.json()["type"].endswith("/invalid-transition")
    assert (await harness.client.post(f"{path}/end", headers=OPERATOR)).status_code == 200
    first, second = await asyncio.gather(
        harness.client.post(f"{path}/settle", headers=OPERATOR),
        harness.client.post(f"{path}/settle", headers=OPERATOR),
    )
    assert sorted([first.status_code, second.status_code]) == [200, 409]
    assert len(await harness.events("campaign.settled")) == 1


async def test_cancelled_campaign_takes_no_participation(harness: Harness) -> None:
    campaign = await harness.active("checkin", CHECKIN)
    member = await harness.member()
    path = f"/v1/campaigns/{campaign['id']}"
    cancelled = await harness.client.post(
        f"{path}/cancel", json={"reason": "typo"}, headers=OPERATOR
    )
    assert cancelled.json()["status"] == "cancelled"
    refused = await harness.post_as(member, f"{path}/checkins")
    assert refused.status_code == 409
    assert refused.json()["type"].endswith("/campaign-not-open")
    assert (await harness.client.post(f"{path}/cancel", headers=OPERATOR)).status_code == 409


async def test_unknown_campaign_is_404_problem(harness: Harness) -> None:
    response = await harness.client.get("/v1/campaigns/nope", headers=OPERATOR)
    assert response.status_code == 404
    assert response.json()["type"].endswith("/campaign-not-found")


async def test_members_do_not_see_drafts(harness: Harness) -> None:
    draft = await harness.create("checkin", CHECKIN)
    active = await harness.active("checkin", CHECKIN)
    member = auth(Role.MEMBER)
    assert (
        await harness.client.get(f"/v1/campaigns/{draft['id']}", headers=member)
    ).status_code == 404
    listed = (await harness.client.get("/v1/campaigns", headers=member)).json()["items"]
    assert [c["id"] for c in listed] == [active["id"]]
    assert (
        await harness.client.get("/v1/campaigns", headers=auth(Role.PARTNER))
    ).status_code == 403


async def test_list_filters_by_status_and_pages(harness: Harness) -> None:
    for _ in range(3):
        await harness.active("checkin", CHECKIN)
    await harness.create("checkin", CHECKIN)
    first = (
        await harness.client.get("/v1/campaigns?status=active&limit=2", headers=OPERATOR)
    ).json()
    assert len(first["items"]) == 2
    rest = (
        await harness.client.get(
            f"/v1/campaigns?status=active&limit=2&cursor={first['next_cursor']}",
            headers=OPERATOR,
        )
    ).json()
    assert len(rest["items"]) == 1
    assert rest["next_cursor"] is None


async def test_two_replicas_racing_the_scheduler_move_each_campaign_once(
    pg_databases: Databases,
) -> None:
    url = await pg_databases.new("campaigns")
    clock = Clock(START - timedelta(hours=1))
    one, one_ctx = await start_campaigns(url, clock)
    two, two_ctx = await start_campaigns(url, clock)
    async with one_ctx as client, two_ctx:
        ids = []
        for i in range(30):
            body = {
                "name": f"c{i}",
                "type": "checkin",
                "objective": "engagement",
                "community_id": "c",
                "starts_at": START.isoformat(),
                "ends_at": (START + timedelta(days=1)).isoformat(),
                "rules": CHECKIN,
            }
            created = (await client.post("/v1/campaigns", json=body, headers=OPERATOR)).json()
            await client.post(f"/v1/campaigns/{created['id']}/launch", headers=OPERATOR)
            ids.append(created["id"])

        async def drain(app: object) -> int:
            runtime = app.state.runtime  # type: ignore[attr-defined]
            job = app.state.lifecycle_job  # type: ignore[attr-defined]
            moved = 0
            while True:
                with contextlib.suppress(sa_exc.DBAPIError):
                    handled = await run_once(runtime.db, job)
                    moved += handled
                    if handled == 0:
                        return moved

        for now in (START, START + timedelta(days=1)):
            clock.now = now
            counts = await asyncio.gather(drain(one), drain(two))
            assert sum(counts) == 30
        harness = Harness(client, one, clock)
        started = await harness.events("campaign.started")
        ended = await harness.events("campaign.ended")
        assert sorted(e.subject for e in started) == sorted(ids)
        assert sorted(e.subject for e in ended) == sorted(ids)
        async with one.state.runtime.db.session() as session:
            statuses = await session.scalar(select(func.count()).where(Campaign.status == "ended"))
        assert statuses == 30
