"""Who may read metrics, what is refused clearly, and the dashboard page."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from importlib.metadata import distribution
from pathlib import Path

from shared.auth import Role
from tests.analytics.conftest import MONDAY, OPERATOR, Analytics, at, new_id
from tests.conftest import auth

PATHS = (
    "/v1/metrics/overview",
    "/v1/metrics/activity",
    "/v1/metrics/activity-heatmap",
    "/v1/metrics/retention",
    "/v1/metrics/top-contributors",
    "/v1/metrics/funnels?steps=member.registered,post.viewed",
)


async def test_operators_and_partners_with_the_scope_read_every_metric(
    analytics: Analytics,
) -> None:
    partner = auth(Role.PARTNER, scopes=frozenset({"metrics:read"}))
    for path in PATHS:
        for headers in (OPERATOR, partner):
            response = await analytics.client.get(path, headers=headers)
            assert response.status_code == 200, (path, response.text)
        assert (await analytics.client.get(path)).status_code == 401
        member = await analytics.client.get(path, headers=auth(Role.MEMBER))
        assert member.status_code == 403
        other = auth(Role.PARTNER, scopes=frozenset({"members:read"}))
        assert (await analytics.client.get(path, headers=other)).status_code == 403


async def test_moderators_read_only_their_own_communities(analytics: Analytics) -> None:
    club = await analytics.community()
    member = new_id()
    await analytics.check_in("camp", member, at(MONDAY), club)
    post = await analytics.publish(member, club, at(MONDAY))
    moderator = auth(Role.MODERATOR, communities=frozenset({club}))
    own = await analytics.client.get(
        "/v1/metrics/overview", params={"community_id": club}, headers=moderator
    )
    assert own.status_code == 200
    for params in ({}, {"community_id": new_id()}):
        refused = await analytics.client.get(
            "/v1/metrics/overview", params=params, headers=moderator
        )
        assert refused.status_code == 403
    assert (
        await analytics.client.get(f"/v1/metrics/content/{post}", headers=moderator)
    ).status_code == 200
    stranger = auth(Role.MODERATOR, communities=frozenset({new_id()}))
    assert (
        await analytics.client.get(f"/v1/metrics/content/{post}", headers=stranger)
    ).status_code == 403
    assert (
        await analytics.client.get("/v1/metrics/campaigns/camp", headers=moderator)
    ).status_code == 403


async def test_the_heatmap_refuses_a_segment_it_cannot_split(analytics: Analytics) -> None:
    response = await analytics.client.get(
        "/v1/metrics/activity-heatmap?segment_id=seg-1", headers=OPERATOR
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("segment-not-supported")


async def test_bad_filters_are_clear_422s(analytics: Analytics) -> None:
    cases = [
        {"from": "2026-02-01", "to": "2026-01-01"},
        {"from": "2020-01-01", "to": "2026-01-01"},
        {"granularity": "hour"},
        {"from": "yesterday"},
    ]
    for params in cases:
        response = await analytics.client.get(
            "/v1/metrics/overview", params=params, headers=OPERATOR
        )
        assert response.status_code == 422, params
    unknown = await analytics.client.get(f"/v1/metrics/content/{new_id()}", headers=OPERATOR)
    assert unknown.status_code == 404


async def test_week_and_month_series_count_distinct_members_per_bucket(
    analytics: Analytics,
) -> None:
    member = new_id()
    for offset in (0, 1, 8):
        await analytics.check_in("camp", member, at(MONDAY + timedelta(days=offset)), "c1")
    weekly = await analytics.get(
        "/v1/metrics/overview",
        granularity="week",
        **{"from": MONDAY + timedelta(days=1), "to": MONDAY + timedelta(days=13)},
    )
    assert [(p["start"], p["active_members"]) for p in weekly["series"]] == [
        (str(MONDAY + timedelta(days=1)), 1),
        (str(MONDAY + timedelta(days=7)), 1),
    ]
    monthly = await analytics.get(
        "/v1/metrics/overview", granularity="month", **{"from": "2026-02-15", "to": "2026-03-31"}
    )
    assert [(p["start"], p["end"], p["active_members"]) for p in monthly["series"]] == [
        ("2026-02-15", "2026-02-28", 0),
        ("2026-03-01", "2026-03-31", 1),
    ]


async def test_the_dashboard_page_loads_its_chart_library_from_analytics_only(
    analytics: Analytics,
) -> None:
    response = await analytics.client.get("/dashboard")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    for path in ("/v1/metrics/overview", "/v1/metrics/activity-heatmap", "/v1/auth/token"):
        assert path in page
    plotly = distribution("plotly")
    scripts = re.findall(r'<script src="([^"]*)"', page)
    assert scripts == [f"/dashboard/static/plotly.min.js?v={plotly.version}"]
    for external in ("<link", "https://", "http://"):
        assert external not in page


def shipped_plotly_js() -> bytes:
    """The file as the ``plotly`` wheel installed it."""
    return Path(
        str(distribution("plotly").locate_file("plotly/package_data/plotly.min.js"))
    ).read_bytes()


async def test_the_chart_library_is_the_wheels_file_cached_for_good_and_gzipped(
    analytics: Analytics,
) -> None:
    shipped = await asyncio.to_thread(shipped_plotly_js)
    url = re.findall(r'<script src="([^"]*)"', (await analytics.client.get("/dashboard")).text)[0]
    packed = await analytics.client.get(url, headers={"Accept-Encoding": "gzip"})  # no token
    assert packed.status_code == 200
    assert packed.headers["content-type"].startswith("text/javascript")
    assert packed.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert packed.headers["content-encoding"] == "gzip"
    assert int(packed.headers["content-length"]) < len(shipped) / 2
    assert packed.content == shipped  # httpx inflates it
    plain = await analytics.client.get(url, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert plain.content == shipped
    assert plain.content.startswith(b"/**\n* plotly.js v")


async def test_every_metric_table_exports_as_csv(analytics: Analytics) -> None:
    member = new_id()
    await analytics.check_in("camp", member, at(MONDAY), "c1")
    period = {"from": str(MONDAY), "to": str(MONDAY + timedelta(days=6)), "format": "csv"}
    cases = [
        ("/v1/metrics/overview", {"table": "figures"}, "figure,value,previous,change_pct"),
        ("/v1/metrics/overview", {"table": "series"}, "start,end,new_members"),
        ("/v1/metrics/activity", {"table": "lifecycle"}, "start,end,new,returning"),
        ("/v1/metrics/activity-heatmap", {}, "weekday,hour,actions"),
        ("/v1/metrics/retention", {"weeks": "1"}, "week_start,size,week_1_active"),
        ("/v1/metrics/top-contributors", {}, "rank,member_id,score"),
        ("/v1/metrics/campaigns/camp", {}, "name,members,conversion_from_previous"),
    ]
    for path, extra, header in cases:
        response = await analytics.client.get(path, params=period | extra, headers=OPERATOR)
        assert response.status_code == 200, (path, response.text)
        assert response.headers["content-type"].startswith("text/csv")
        assert response.text.startswith(header), (path, response.text[:80])
    overview = await analytics.client.get(
        "/v1/metrics/overview", params=period | {"table": "figures"}, headers=OPERATOR
    )
    assert "checkins,1,0,\n" in overview.text
    wrong = await analytics.client.get(
        "/v1/metrics/overview", params=period | {"table": "nope"}, headers=OPERATOR
    )
    assert wrong.status_code == 422
