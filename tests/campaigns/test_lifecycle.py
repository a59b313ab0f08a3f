"""Creating, launching, the scheduler's transitions, ending, settling, cancelling."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta

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


# --- editing before launch --------------------------------------------------------------------


async def test_a_draft_is_edited_field_by_field(harness: Harness) -> None:
    campaign = await harness.create("checkin", CHECKIN, budget_points=100)
    path = f"/v1/campaigns/{campaign['id']}"
    new_end = START + timedelta(days=7)
    edit = {
        "name": "7-day sprint",
        "ends_at": new_end.isoformat(),
        "rules": {"days_required": 7, "mode": "consecutive"},
        "budget_points": 500,
    }
    response = await harness.client.patch(path, json=edit, headers=OPERATOR)
    assert response.status_code == 200, response.text
    stored = (await harness.client.get(path, headers=OPERATOR)).json()
    assert stored["name"] == "7-day sprint"
    assert datetime.fromisoformat(stored["ends_at"]) == new_end
    assert (stored["rules"]["days_required"], stored["rules"]["mode"]) == (7, "consecutive")
    assert stored["rules"]["makeup_cards"] == 0, "rules are checked and completed by type"
    assert stored["budget_points"] == 500
    assert (stored["objective"], stored["timezone"]) == (campaign["objective"], "Asia/Shanghai")
    cleared = await harness.client.patch(path, json={"budget_points": None}, headers=OPERATOR)
    assert cleared.json()["budget_points"] is None


async def test_a_scheduled_campaign_is_edited_and_starts_at_its_new_time(
    harness: Harness,
) -> None:
    later = START + timedelta(hours=2)
    campaign = await harness.create("checkin", CHECKIN, starts_at=later.isoformat())
    path = f"/v1/campaigns/{campaign['id']}"
    await harness.client.post(f"{path}/launch", headers=OPERATOR)
    sooner = START + timedelta(minutes=30)
    edit = await harness.client.patch(
        path, json={"starts_at": sooner.isoformat()}, headers=OPERATOR
    )
    assert edit.status_code == 200, edit.text
    assert edit.json()["status"] == "scheduled"
    harness.clock.advance(minutes=31)
    assert await harness.tick() == 1
    assert (await harness.client.get(path, headers=OPERATOR)).json()["status"] == "active"


async def test_once_active_ended_or_cancelled_a_campaign_cannot_be_edited(
    harness: Harness,
) -> None:
    campaign = await harness.active("checkin", CHECKIN)
    path = f"/v1/campaigns/{campaign['id']}"
    for step in (None, "end", "settle"):
        if step is not None:
            assert (await harness.client.post(f"{path}/{step}", headers=OPERATOR)).is_success
        response = await harness.client.patch(path, json={"name": "late"}, headers=OPERATOR)
        assert response.status_code == 409
        assert response.json()["type"].endswith("/campaign-locked")
    cancelled = await harness.create("checkin", CHECKIN)
    await harness.client.post(f"/v1/campaigns/{cancelled['id']}/cancel", headers=OPERATOR)
    response = await harness.client.patch(
        f"/v1/campaigns/{cancelled['id']}", json={"name": "late"}, headers=OPERATOR
    )
    assert response.status_code == 409
    names = {
        c["name"]
        for c in (await harness.client.get("/v1/campaigns", headers=OPERATOR)).json()["items"]
    }
    assert "late" not in names


async def test_bad_edits_are_problems_naming_the_field_and_change_nothing(
    harness: Harness,
) -> None:
    campaign = await harness.create("checkin", CHECKIN)
    path = f"/v1/campaigns/{campaign['id']}"
    bad_rules = await harness.client.patch(
        path, json={"name": "renamed", "rules": {"days_required": 0}}, headers=OPERATOR
    )
    assert bad_rules.status_code == 422
    assert bad_rules.json()["type"].endswith("/invalid-campaign")
    assert bad_rules.json()["errors"][0]["field"] == "body.rules.days_required"
    other_type = await harness.client.patch(
        path, json={"rules": {"stock": 5, "coupon_template_id": "t"}}, headers=OPERATOR
    )
    assert other_type.status_code == 422
    backwards = await harness.client.patch(
        path, json={"ends_at": (START - timedelta(days=1)).isoformat()}, headers=OPERATOR
    )
    assert backwards.status_code == 422
    for body in ({"name": None}, {"timezone": "Mars/Olympus"}, {"type": "quiz"}):
        response = await harness.client.patch(path, json=body, headers=OPERATOR)
        assert response.status_code == 422, body
    member = await harness.client.patch(path, json={"name": "mine"}, headers=auth(Role.MEMBER))
    assert member.status_code == 403
    missing = await harness.client.patch("/v1/campaigns/nope", json={}, headers=OPERATOR)
    assert missing.status_code == 404
    stored = (await harness.client.get(path, headers=OPERATOR)).json()
    assert (stored["name"], stored["rules"], stored["ends_at"]) == (
        campaign["name"],
        campaign["rules"],
        campaign["ends_at"],
    )


async def test_editing_a_flash_sale_stock_moves_its_coupon_budget(harness: Harness) -> None:
    rules = {"stock": 10, "coupon_template_id": "tpl-1"}
    campaign = await harness.create("flash_sale", rules, budget_coupons=3)
    assert campaign["budget_coupons"] == 10
    response = await harness.client.patch(
        f"/v1/campaigns/{campaign['id']}",
        json={"rules": {**rules, "stock": 25}, "budget_coupons": 1},
        headers=OPERATOR,
    )
    assert response.status_code == 200, response.text
    assert (response.json()["budget_coupons"], response.json()["stock_left"]) == (25, 25)
