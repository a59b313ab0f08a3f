"""Check-in challenge: local days, streaks, make-up cards, milestones, completion, budget."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from services.campaigns.members_client import MembersClient
from services.campaigns.types.checkin import streaks
from services.members.app import create_app as create_members_app
from services.members.settings import MembersSettings
from shared.auth import Role
from tests.campaigns.conftest import OPERATOR, START, Clock, Harness, start_campaigns
from tests.conftest import Databases, auth

RULES: dict[str, Any] = {
    "days_required": 3,
    "mode": "consecutive",
    "makeup_cards": 1,
    "milestones": [{"checkins": 2, "reward": {"kind": "points", "points": 5}}],
    "completion_reward": {"kind": "points", "points": 100},
}


async def test_one_check_in_per_local_day_and_streaks_grow(harness: Harness) -> None:
    campaign = await harness.active("checkin", RULES)
    member = await harness.member()
    path = f"/v1/campaigns/{campaign['id']}/checkins"
    first = await harness.post_as(member, path, {"note": "day one"})
    assert first.status_code == 201, first.text
    assert first.json()["day"] == "2026-03-02"
    again = await harness.post_as(member, path)
    assert again.status_code == 409
    assert again.json()["type"].endswith("/already-checked-in")

    # 16:30 UTC is already the next day in Shanghai.
    harness.clock.now = datetime(2026, 3, 2, 16, 30, tzinfo=UTC)
    second = (await harness.post_as(member, path)).json()
    assert (second["day"], second["streak"], second["total"]) == ("2026-03-03", 2, 2)
    mine = await harness.client.get(path, headers=auth(Role.MEMBER, member))
    assert [(c["day"], c["note"]) for c in mine.json()["items"]] == [
        ("2026-03-02", "day one"),
        ("2026-03-03", None),
    ]
    theirs = await harness.client.get(f"{path}?member_id={member}", headers=auth(Role.MEMBER))
    assert theirs.status_code == 403
    [joined] = await harness.events("campaign.joined")
    assert joined.data["member_id"] == member
    checked = await harness.events("campaign.checked_in")
    assert [e.data["streak"] for e in checked] == [1, 2]
    assert checked[0].data["community_id"] == harness.community_id


async def test_make_up_card_fills_a_missed_day_and_completes_the_streak(
    harness: Harness,
) -> None:
    campaign = await harness.active("checkin", RULES)
    member = await harness.member()
    path = f"/v1/campaigns/{campaign['id']}/checkins"
    await harness.post_as(member, path)
    harness.clock.advance(days=2)
    gap = (await harness.post_as(member, path)).json()
    assert (gap["streak"], gap["best_streak"], gap["completed"]) == (1, 1, False)

    future = await harness.post_as(member, path, {"makeup_day": "2026-03-09"})
    assert future.status_code == 422
    assert future.json()["field"] == "makeup_day"
    filled = (await harness.post_as(member, path, {"makeup_day": "2026-03-03"})).json()
    assert (filled["makeup"], filled["best_streak"], filled["completed"]) == (True, 3, True)
    assert filled["makeups_left"] == 0
    harness.clock.advance(days=2)
    no_cards = await harness.post_as(member, path, {"makeup_day": "2026-03-05"})
    assert no_cards.status_code == 409
    assert no_cards.json()["type"].endswith("/no-makeup-cards")

    [completed] = await harness.events("campaign.completed")
    assert completed.data["member_id"] == member
    grants = await harness.events("campaign.reward_granted")
    assert [g.data["reason"] for g in grants] == ["checkin-milestone:2"]


async def test_settlement_pays_finishers_within_budget_once(harness: Harness) -> None:
    campaign = await harness.active(
        "checkin", {**RULES, "milestones": [], "mode": "total"}, budget_points=150
    )
    path = f"/v1/campaigns/{campaign['id']}"
    first, second, slacker = [await harness.member() for _ in range(3)]
    for _ in range(3):
        for member in (first, second):
            assert (await harness.post_as(member, f"{path}/checkins")).status_code == 201
            harness.clock.advance(minutes=1)
        harness.clock.advance(days=1)
    await harness.post_as(slacker, f"{path}/checkins")
    board = (await harness.client.get(f"{path}/leaderboard", headers=OPERATOR)).json()
    assert [row["member_id"] for row in board["items"]][:2] == [first, second]
    assert board["seconds_remaining"] > 0

    await harness.client.post(f"{path}/end", headers=OPERATOR)
    settled = (await harness.client.post(f"{path}/settle", headers=OPERATOR)).json()
    assert (settled["grants"], settled["points"]) == (1, 100)  # the budget pays one finisher
    [grant] = await harness.events("campaign.reward_granted")
    assert (grant.data["member_id"], grant.data["points"]) == (first, 100)
    again = await harness.client.post(f"{path}/settle", headers=OPERATOR)
    assert again.status_code == 409
    assert len(await harness.events("campaign.reward_granted")) == 1


async def test_participation_needs_the_window_and_the_community(harness: Harness) -> None:
    campaign = await harness.active("checkin", RULES)
    path = f"/v1/campaigns/{campaign['id']}/checkins"
    outsider = await harness.member(community_id="elsewhere")
    refused = await harness.post_as(outsider, path)
    assert refused.status_code == 403
    assert refused.json()["type"].endswith("/not-community-member")
    member = await harness.member()
    harness.clock.now = START + timedelta(days=22)
    late = await harness.post_as(member, path)
    assert late.status_code == 409
    assert late.json()["type"].endswith("/campaign-not-open")
    assert await harness.events("campaign.checked_in") == []


async def test_joining_twice_is_a_conflict(harness: Harness) -> None:
    campaign = await harness.active("checkin", RULES)
    member = await harness.member()
    path = f"/v1/campaigns/{campaign['id']}/participants"
    assert (await harness.post_as(member, path)).status_code == 201
    again = await harness.post_as(member, path)
    assert again.status_code == 409
    assert again.json()["type"].endswith("/already-joined")


async def test_participants_are_for_staff_of_the_community(harness: Harness) -> None:
    campaign = await harness.active("checkin", RULES)
    member = await harness.member()
    moderator = await harness.member(role="moderator")
    await harness.post_as(member, f"/v1/campaigns/{campaign['id']}/participants")
    path = f"/v1/campaigns/{campaign['id']}/participants"
    as_member = await harness.client.get(path, headers=auth(Role.MEMBER, member))
    as_moderator = await harness.client.get(path, headers=auth(Role.MODERATOR, moderator))
    as_other_moderator = await harness.client.get(path, headers=auth(Role.MODERATOR))
    assert as_member.status_code == 403
    assert as_other_moderator.status_code == 403
    assert [p["member_id"] for p in as_moderator.json()["items"]] == [member]


async def members_app(databases: Databases) -> FastAPI:
    settings = MembersSettings.model_validate(
        {"database_url": await databases.new("members"), "log_json": False}
    )
    return create_members_app(settings, run_background=False)


async def test_target_segment_is_checked_against_the_members_service(
    databases: Databases,
) -> None:
    members = await members_app(databases)
    async with members.router.lifespan_context(members):
        transport = httpx.ASGITransport(app=members)
        async with httpx.AsyncClient(transport=transport, base_url="http://members") as http:
            ops = auth(Role.OPERATOR)
            shanghai = (
                await http.post("/v1/members", json={"nickname": "sh", "gender": "female"})
            ).json()
            beijing = (
                await http.post("/v1/members", json={"nickname": "bj", "gender": "male"})
            ).json()
            segment = await http.post(
                "/v1/segments",
                json={"name": "women", "rules": {"field": "gender", "values": ["female"]}},
                headers=ops,
            )
            assert segment.status_code == 201, segment.text
            segment_id = segment.json()["id"]

            clock = Clock(START + timedelta(minutes=1))
            client = MembersClient(
                members.state.runtime.tokens, base_url="http://members", client=http
            )
            app, context = await start_campaigns(await databases.new("campaigns"), clock, client)
            async with context as campaigns:
                harness = Harness(campaigns, app, clock)
                await harness.community()
                for member in (shanghai, beijing):
                    await harness.member(member_id=member["id"])
                campaign = await harness.active("checkin", RULES, segment_id=segment_id)
                path = f"/v1/campaigns/{campaign['id']}/checkins"
                inside = await harness.post_as(shanghai["id"], path)
                outside = await harness.post_as(beijing["id"], path)
    assert inside.status_code == 201, inside.text
    assert outside.status_code == 403
    assert outside.json()["type"].endswith("/not-in-target-segment")


async def test_concurrent_check_ins_of_one_member_on_one_day_give_one(harness: Harness) -> None:
    campaign = await harness.active("checkin", RULES)
    member = await harness.member()
    path = f"/v1/campaigns/{campaign['id']}/checkins"
    responses = await asyncio.gather(*(harness.post_as(member, path) for _ in range(8)))
    assert sorted(r.status_code for r in responses) == [201] + [409] * 7
    assert len(await harness.events("campaign.checked_in")) == 1


async def test_a_retried_check_in_with_its_idempotency_key_replays_the_first(
    harness: Harness,
) -> None:
    campaign = await harness.active("checkin", RULES)
    member = await harness.member()
    path = f"/v1/campaigns/{campaign['id']}/checkins"
    headers = {**auth(Role.MEMBER, member), "Idempotency-Key": "tap-1"}
    first = await harness.client.post(path, json={"note": "hi"}, headers=headers)
    again = await harness.client.post(path, json={"note": "hi"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert len(await harness.events("campaign.checked_in")) == 1


def test_streaks_count_the_current_run_and_the_best_run() -> None:
    days = [date(2026, 3, d) for d in (1, 2, 3, 5, 6)]
    assert streaks(days) == (2, 3)
    assert streaks([]) == (0, 0)
