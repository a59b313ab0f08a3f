"""The operators' dashboard in headless Chromium: log in, demo data, charts show the API's numbers.

Debian's ``chromium`` (``make test`` installs it) is driven through Playwright's
bundled driver; Playwright's own browser downloads are never used. The whole
platform runs as processes on the SQLite lane: the page and the metrics are the
same on PostgreSQL, which the rest of the e2e suite covers. The charts are
Plotly's, from the file the ``plotly`` wheel ships, served by analytics.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.broker import free_port
from shared.demo import Demo
from shared.runner import Platform

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
METRIC_PATHS = {
    "overview": "/v1/metrics/overview",
    "activity": "/v1/metrics/activity",
    "heatmap": "/v1/metrics/activity-heatmap",
    "contributors": "/v1/metrics/top-contributors",
    "funnel": "/v1/metrics/funnels",
}
DASHBOARD_FUNNEL = "member.registered,post.viewed,reaction.added,comment.created"
PLOTLY = distribution("plotly")


def shipped_plotly_version() -> str:
    """The plotly.js version the wheel's file says in its header (``* plotly.js v4.1.1``)."""
    path = Path(str(PLOTLY.locate_file("plotly/package_data/plotly.min.js")))
    with path.open() as library:
        header = library.read(200)
    found = re.search(r"plotly\.js v(\S+)", header)
    assert found, header
    return found.group(1)


if not CHROMIUM.exists():  # a missing browser fails: the dashboard is proven or the suite is red
    raise RuntimeError(
        "Debian's chromium is not installed: run `make test` (or apt-get install chromium)"
    )

from playwright.sync_api import Page, sync_playwright  # noqa: E402 (after the chromium check)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    data = tmp_path_factory.mktemp("dashboard")
    with Platform(data, gateway_port=free_port(), free_ports=True) as running:
        yield running


@pytest.fixture(scope="module")
def demo(platform: Platform) -> Demo:
    """A small demo community, written through the gateway like `community demo` does."""

    async def fill() -> Demo:
        async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=30) as client:
            community = Demo(client, seed=11, members=24, active=10, admin=("admin", "admin"))
            await community.run()
            return community

    return asyncio.run(fill())


@pytest.fixture(scope="module")
def api(platform: Platform, demo: Demo) -> Iterator[httpx.Client]:
    """An operator's client, once analytics has applied every demo event (figures settle)."""
    with httpx.Client(base_url=platform.gateway_url, timeout=10) as http:
        token = http.post("/v1/auth/token", data={"username": "admin", "password": "admin"})
        http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        settled(http, demo)
        yield http


def settled(http: httpx.Client, demo: Demo) -> None:
    """Wait until every member is counted and the figures stop moving for two seconds."""
    deadline = time.monotonic() + 120
    last: Any = None
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        overview = http.get(METRIC_PATHS["overview"]).json()
        heat = http.get(METRIC_PATHS["heatmap"]).json()["cells"]
        snapshot = (overview["figures"], heat)
        if snapshot != last:
            last, stable_since = snapshot, time.monotonic()
        elif (
            overview["members"]["total"] == demo.report.members
            and time.monotonic() - stable_since > 2
        ):
            return
        time.sleep(0.3)
    raise AssertionError(f"analytics never settled: {last}")


@pytest.fixture(scope="module")
def page(platform: Platform, api: httpx.Client) -> Iterator[tuple[Page, list[str]]]:
    """A fresh Chromium profile; any request leaving the gateway is recorded and refused."""
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(locale="en-US")
        outside: list[str] = []

        def local_only(route: Any) -> None:
            url = route.request.url
            if url.startswith(platform.gateway_url) or url.startswith(("data:", "about:")):
                route.continue_()
            else:
                outside.append(url)
                route.abort()

        context.route("**/*", local_only)
        tab = context.new_page()
        try:
            yield tab, outside
        finally:
            context.close()
            browser.close()


def wait_for_load(page: Page, loads_before: int) -> None:
    page.wait_for_function(
        "n => Number(document.body.dataset.loads || 0) > n", arg=loads_before, timeout=30_000
    )
    status = page.inner_text("#status")
    assert status.startswith("complete up to"), status


def loads(page: Page) -> int:
    return int(page.evaluate("Number(document.body.dataset.loads || 0)"))


def shown(page: Page) -> dict[str, Any]:
    """What the charts drew: the arrays Plotly plotted (kept on each chart) and the tables."""
    drawn: dict[str, Any] = page.evaluate(
        """() => {
        const q = (sel) => Array.from(document.querySelectorAll(sel));
        const cards = Object.fromEntries(q("#cards .card").map((c) => [c.dataset.figure,
            {value: Number(c.dataset.value), text: c.querySelector(".value").textContent}]));
        const plotted = (id) => document.getElementById(id).data || [];
        const series = (id) => Object.fromEntries(plotted(id).map((t) => [t.name, t.y]));
        const first = (id) => plotted(id)[0] || {};
        return {
            cards, growth: series("growth"), activity: series("activity"),
            heatmap: first("heatmap").z,
            contributors: q("#contributors tr[data-member]").map((tr) =>
                [tr.dataset.member, tr.children[1].textContent]),
            funnel: first("funnel").x,
        };
    }"""
    )
    return drawn


def rendered(page: Page) -> dict[str, dict[str, Any]]:
    """What Plotly put in each chart's SVG: lines and their markers, bars, heatmap images."""
    charts: dict[str, dict[str, Any]] = page.evaluate(
        """() => Object.fromEntries(["growth", "activity", "heatmap", "funnel", "retention"]
            .map((id) => {
                const chart = document.getElementById(id);
                const all = (sel) => Array.from(chart.querySelectorAll(sel));
                return [id, {
                    plotly: chart.classList.contains("js-plotly-plot"),
                    svgs: all("svg.main-svg").length,
                    markers: all(".scatterlayer .trace").map((t) =>
                        t.querySelectorAll("path.point").length),
                    bars: all(".barlayer .point path").length,
                    images: all(".heatmaplayer image").map((i) => i.getAttribute("href")),
                }];
            }))"""
    )
    return charts


def assert_plotly_drew(page: Page, drawn: dict[str, Any]) -> None:
    """Every chart is Plotly's SVG, with one marker per value and one bar per funnel step."""
    charts = rendered(page)
    assert all(c["plotly"] and c["svgs"] >= 1 for c in charts.values()), charts
    for name in ("growth", "activity"):
        values = [sum(v is not None for v in series) for series in drawn[name].values()]
        assert charts[name]["markers"] == values, name
    assert charts["funnel"]["bars"] == sum(v is not None for v in drawn["funnel"])
    assert len(charts["heatmap"]["images"]) == 1, "Plotly paints the heatmap as one image"
    assert charts["heatmap"]["images"][0].startswith("data:image/png")


def expected(api: httpx.Client, filters: dict[str, str]) -> dict[str, Any]:
    """The same figures from the API, asked with the filters the page sends."""
    query = {"granularity": "week", **filters}
    answers = {}
    for name, path in METRIC_PATHS.items():
        params = {**query, "steps": DASHBOARD_FUNNEL} if name == "funnel" else query
        if name == "heatmap":  # per hour, not per member: the page asks it without the segment
            params = {k: v for k, v in params.items() if k != "segment_id"}
        response = api.get(path, params=params)
        assert response.status_code == 200, response.text
        answers[name] = response.json()
    return answers


def assert_page_matches_api(page: Page, api: httpx.Client, filters: dict[str, str]) -> None:
    drawn, truth = shown(page), expected(api, filters)
    assert_plotly_drew(page, drawn)
    figures = truth["overview"]["figures"]
    assert set(drawn["cards"]) <= set(figures)
    assert len(drawn["cards"]) >= 6, "the growth and activity cards are always there"
    for name, card in drawn["cards"].items():
        assert card["value"] == pytest.approx(figures[name]["value"]), name
    for name in ("total_members", "new_members", "dau", "wau", "mau", "interactions"):
        if name not in figures:  # per-event figures are left out for a segment
            continue
        assert drawn["cards"][name]["text"] == f"{figures[name]['value']:,}", name
    series = truth["overview"]["series"]
    assert drawn["growth"]["new members"] == [p["new_members"] for p in series]
    assert drawn["growth"]["active"] == [p["active_members"] for p in series]
    days = truth["activity"]["days"]
    assert drawn["activity"]["DAU"] == [d["dau"] for d in days]
    assert drawn["activity"]["MAU"] == [d["mau"] for d in days]
    assert drawn["heatmap"] == truth["heatmap"]["cells"]
    items = truth["contributors"]["items"]
    assert [member for member, _ in drawn["contributors"]] == [m["member_id"] for m in items]
    assert drawn["funnel"] == [s["members"] for s in truth["funnel"]["steps"]]


@pytest.fixture(scope="module")
def dashboard(page: tuple[Page, list[str]], platform: Platform) -> tuple[Page, list[str]]:
    """The operator signs in through the page's own login form; the page then loads itself."""
    tab, outside = page
    tab.goto(f"{platform.gateway_url}/dashboard")
    before = loads(tab)
    tab.fill("#login input[name=username]", "admin")
    tab.fill("#login input[name=password]", "admin")
    tab.click("#login button")
    wait_for_load(tab, before)
    return tab, outside


def test_operator_logs_in_and_the_charts_show_the_apis_numbers(
    dashboard: tuple[Page, list[str]], platform: Platform, api: httpx.Client, demo: Demo
) -> None:
    tab, outside = dashboard
    drawn = shown(tab)
    assert drawn["cards"]["total_members"]["value"] == demo.report.members
    assert sum(map(sum, drawn["heatmap"])) > 0, "the demo's activity shows on the heatmap"
    assert drawn["contributors"], "the demo's posters rank as contributors"
    assert_page_matches_api(tab, api, {})
    assert outside == [], "the dashboard loads nothing from outside the gateway"
    scripts = tab.evaluate("Array.from(document.scripts, (s) => s.src).filter(Boolean)")
    library = f"{platform.gateway_url}/dashboard/static/plotly.min.js?v={PLOTLY.version}"
    assert scripts == [library], "the one script is the plotly wheel's file, from the gateway"
    assert tab.evaluate("Plotly.version") == shipped_plotly_version()
    encoded, decoded = tab.evaluate(
        """(url) => performance.getEntriesByName(url).map((e) =>
            [e.encodedBodySize, e.decodedBodySize])[0]""",
        library,
    )
    assert 0 < encoded < decoded / 2, "gzipped on the way, through the gateway too"


def test_community_and_date_filters_change_the_numbers_like_the_api(
    dashboard: tuple[Page, list[str]], api: httpx.Client, demo: Demo
) -> None:
    tab, outside = dashboard
    everyone = shown(tab)["cards"]["total_members"]["value"]

    fit = demo.communities[1]
    before = loads(tab)
    tab.fill("#community", fit["id"])
    tab.click("#load")
    wait_for_load(tab, before)
    in_fit = shown(tab)["cards"]["total_members"]["value"]
    assert 0 < in_fit < everyone, "only the fit club's members count"
    assert_page_matches_api(tab, api, {"community_id": fit["id"]})

    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    before = loads(tab)
    tab.fill("#community", "")
    tab.fill("#from", yesterday)
    tab.fill("#to", yesterday)
    tab.click("#load")
    wait_for_load(tab, before)
    drawn = shown(tab)
    assert drawn["cards"]["total_members"]["value"] == 0, "nobody had registered yet"
    assert drawn["cards"]["dau"]["value"] == 0
    assert_page_matches_api(tab, api, {"from": yesterday, "to": yesterday})
    assert outside == []


def test_a_segment_filter_shows_the_segments_members(
    dashboard: tuple[Page, list[str]], api: httpx.Client
) -> None:
    tab, outside = dashboard
    segment = api.post(
        "/v1/segments",
        json={"name": "women (browser test)", "rules": {"field": "gender", "values": ["female"]}},
    )
    assert segment.status_code == 201, segment.text
    segment_id = segment.json()["id"]
    size = api.get(f"/v1/segments/{segment_id}/count").json()["count"]
    assert size > 0, "the demo registers women"

    before = loads(tab)
    tab.fill("#from", "")
    tab.fill("#to", "")
    tab.fill("#segment", segment_id)
    tab.click("#load")
    wait_for_load(tab, before)
    drawn = shown(tab)
    assert drawn["cards"]["total_members"]["value"] == size, "every woman, as members counts"
    assert "posts" not in drawn["cards"], "counted per event: not split by segment"
    assert_page_matches_api(tab, api, {"segment_id": segment_id})
    assert outside == []
