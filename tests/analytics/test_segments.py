"""Per-segment figures: the real members service evaluates the segment, analytics filters by it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.analytics.app import create_app
from services.analytics.segments import SegmentSource
from services.analytics.settings import AnalyticsSettings
from services.members.app import create_app as create_members_app
from services.members.settings import MembersSettings
from shared.auth import Role
from shared.events.contracts import campaigns, members
from tests.analytics.conftest import MONDAY, OPERATOR, Analytics, at, new_id
from tests.conftest import Databases, auth, running

WEEK = {"from": str(MONDAY), "to": str(MONDAY + timedelta(days=6))}


@dataclass
class World:
    app: FastAPI
    analytics: Analytics
    members: httpx.AsyncClient
    segment: str
    women: list[str]
    man: str

    async def member(self, gender: str) -> str:
        response = await self.members.post(
            "/v1/members", json={"nickname": "fan", "gender": gender}
        )
        assert response.status_code == 201, response.text
        member_id: str = response.json()["id"]
        return member_id

    async def get(self, path: str, **params: Any) -> Any:
        return await self.analytics.get(path, **params)


@pytest.fixture
async def world(databases: Databases) -> AsyncIterator[World]:
    """Members and analytics in process; analytics reaches members over HTTP like in production."""
    members_app = create_members_app(
        MembersSettings.model_validate(
            {"database_url": await databases.new("members"), "log_json": False}
        ),
        run_background=False,
    )
    async with running(members_app) as members_http:
        source = SegmentSource(
            members_app.state.runtime.tokens, base_url="http://test", client=members_http
        )
        settings = AnalyticsSettings.model_validate(
            {"database_url": await databases.new("analytics"), "log_json": False}
        )
        app = create_app(settings, run_background=False, segment_source=source)
        async with running(app) as client:
            analytics = Analytics(client, app.state.runtime)
            segment = await members_http.post(
                "/v1/segments",
                json={"name": "women", "rules": {"field": "gender", "values": ["female"]}},
                headers=auth(Role.OPERATOR),
            )
            assert segment.status_code == 201, segment.text
            w = World(app, analytics, members_http, segment.json()["id"], [], "")
            w.women = [await w.member("female"), await w.member("female")]
            w.man = await w.member("male")
            yield w


async def scenario(w: World) -> str:
    """Two women, a man and a member members does not know; a community, check-ins."""
    a = w.analytics
    first, second = w.women
    await a.register(at(MONDAY), channel="weibo", member=first)
    await a.register(at(MONDAY + timedelta(days=1)), channel="app", member=second)
    await a.register(at(MONDAY), channel="app", member=w.man)
    await a.register(at(MONDAY), channel="app", member=new_id())
    community = await a.community()
    for member in (first, w.man):
        await a.join(community, member, at(MONDAY))
    await a.check_in("camp", first, at(MONDAY + timedelta(days=2)), community)
    await a.check_in("camp", w.man, at(MONDAY + timedelta(days=2)), community)
    await a.check_in("camp", second, at(MONDAY + timedelta(days=3)), community)
    return community


async def test_overview_of_a_segment_counts_only_its_members(world: World) -> None:
    community = await scenario(world)
    everyone = await world.get("/v1/metrics/overview", **WEEK)
    women = await world.get("/v1/metrics/overview", segment_id=world.segment, **WEEK)

    assert everyone["members"]["total"] == 4
    assert everyone["figures"]["active_members"]["value"] == 3
    assert women["segment_id"] == world.segment
    assert women["members"] == {"total": 2, "new_in_period": 2, "new_in_previous_period": 0}
    figures = {name: f["value"] for name, f in women["figures"].items()}
    assert figures["net_members"] == 2
    assert figures["active_members"] == 2
    assert figures["wau"] == 2
    assert figures["dau"] == 0  # nobody acted on the last day of the period
    assert "posts" not in figures, "counted per event: a segment cannot split it"
    assert {c["channel"]: c["new_members"] for c in women["channels"]} == {"weibo": 1, "app": 1}
    assert [p["active_members"] for p in women["series"]] == [0, 0, 1, 1, 0, 0, 0]
    assert {p["posts"] for p in women["series"]} == {None}

    in_club = await world.get(
        "/v1/metrics/overview", segment_id=world.segment, community_id=community, **WEEK
    )
    assert in_club["members"]["total"] == 1  # the one woman who joined the community
    # Both women checked in there (acting in a community counts even before joining it).
    assert in_club["figures"]["active_members"]["value"] == 2
    assert in_club["figures"]["new_members"]["value"] == 1


async def test_activity_retention_funnels_and_contributors_follow_the_segment(
    world: World,
) -> None:
    await scenario(world)
    seg = {"segment_id": world.segment}
    activity = await world.get("/v1/metrics/activity", granularity="week", **seg, **WEEK)
    assert [d["dau"] for d in activity["days"]] == [0, 0, 1, 1, 0, 0, 0]
    assert activity["days"][-1]["wau"] == 2
    assert activity["lifecycle"][0]["new"] == 2

    retention = await world.get("/v1/metrics/retention", weeks=1, **seg, **WEEK)
    assert [c["size"] for c in retention["cohorts"]] == [2]

    funnel = await world.get(
        "/v1/metrics/funnels", steps="member.registered,campaign.checked_in", **seg, **WEEK
    )
    assert [s["members"] for s in funnel["steps"]] == [2, 2]

    top = await world.get("/v1/metrics/top-contributors", **seg, **WEEK)
    assert sorted(item["member_id"] for item in top["items"]) == sorted(world.women)


async def test_a_segment_snapshot_serves_until_it_is_older_than_the_cache(world: World) -> None:
    await scenario(world)
    seg = {"segment_id": world.segment, **WEEK}
    assert (await world.get("/v1/metrics/overview", **seg))["members"]["total"] == 2
    third = await world.member("female")
    await world.analytics.register(at(MONDAY + timedelta(days=4)), member=third)
    cached = await world.get("/v1/metrics/overview", **seg)
    assert cached["members"]["total"] == 2, "the snapshot is younger than segment_cache_s"

    world.app.state.segments.cache_s = 0
    fresh = await world.get("/v1/metrics/overview", **seg)
    assert fresh["members"]["total"] == 3


async def test_an_unknown_segment_is_404_and_members_down_is_503(world: World) -> None:
    unknown = await world.analytics.client.get(
        f"/v1/metrics/overview?segment_id={new_id()}", headers=OPERATOR
    )
    assert unknown.status_code == 404
    assert unknown.json()["type"].endswith("segment-not-found")

    app = world.app
    app.state.segments.source = SegmentSource(
        app.state.runtime.tokens, base_url="http://127.0.0.1:9", timeout_s=1
    )
    down = await world.analytics.client.get(
        f"/v1/metrics/overview?segment_id={world.segment}", headers=OPERATOR
    )
    assert down.status_code == 503
    assert down.headers["content-type"] == "application/problem+json"
    await app.state.segments.source.close()


async def test_campaign_reached_is_its_segment_within_its_community(world: World) -> None:
    community = await scenario(world)
    a, campaign = world.analytics, new_id()
    await a.apply(
        campaigns.CampaignCreated(
            campaign_id=campaign,
            community_id=community,
            type="checkin",
            name="women's challenge",
            objective="engagement",
            segment_id=world.segment,
            starts_at=at(MONDAY + timedelta(days=1)),
            ends_at=at(MONDAY + timedelta(days=20)),
            created_by="ops",
            created_at=at(MONDAY),
        )
    )
    await a.apply(
        members.MemberJoinedCommunity(
            community_id=community,
            member_id=world.women[1],
            role="member",
            joined_at=at(MONDAY + timedelta(days=30)),  # after the campaign ended
        )
    )
    body = await world.get(f"/v1/metrics/campaigns/{campaign}")
    assert body["steps"][0] == {
        "name": "reached",
        "members": 1,  # the first woman; the man is outside the segment
        "conversion_from_previous": None,
        "conversion_from_first": 1.0,
    }
