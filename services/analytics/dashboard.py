"""The operators' dashboard: one page whose charts Plotly draws, served with Plotly itself.

The page holds no data: it calls ``/v1/metrics/...`` with a bearer token the
operator pastes or obtains from ``POST /v1/auth/token`` through the gateway.
The chart library is the ``plotly.min.js`` the ``plotly`` wheel ships (a
runtime dependency), served from here: no CDN at view time, works offline.
"""

from __future__ import annotations

import asyncio
import gzip
from functools import cache
from importlib.metadata import distribution
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

router = APIRouter(tags=["dashboard"])

PLOTLY = distribution("plotly")
PLOTLY_JS = "plotly.min.js"
# The version in the query makes the URL change with the library, so it may be cached for good.
PLOTLY_URL = f"/dashboard/static/{PLOTLY_JS}?v={PLOTLY.version}"
FOREVER = "public, max-age=31536000, immutable"

TEMPLATE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Community analytics</title>
<script src="{{plotly}}"></script>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f5f6f8; color: #222; }
  header { background: #1f2a44; color: #fff; padding: 10px 16px; display: flex;
           gap: 12px; align-items: center; flex-wrap: wrap; }
  header h1 { font-size: 17px; margin: 0 16px 0 0; }
  header input, header select, header button { font: inherit; padding: 3px 6px; }
  main { padding: 16px; display: grid; gap: 16px;
         grid-template-columns: repeat(auto-fit, minmax(460px, 1fr)); }
  section { background: #fff; border-radius: 6px; padding: 12px 14px;
            box-shadow: 0 1px 2px rgba(0,0,0,.08); }
  section h2 { font-size: 15px; margin: 0 0 8px; }
  .cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(130px, 1fr));
           gap: 8px; grid-column: 1 / -1; }
  .card { background: #fff; border-radius: 6px; padding: 8px 10px;
          box-shadow: 0 1px 2px rgba(0,0,0,.08); }
  .card .name { font-size: 12px; color: #666; }
  .card .value { font-size: 20px; font-weight: 600; }
  .up { color: #19804a; } .down { color: #b3261e; } .flat { color: #888; }
  table { border-collapse: collapse; width: 100%; }
  th, td { padding: 3px 6px; text-align: right; border-bottom: 1px solid #eee; }
  th:first-child, td:first-child { text-align: left; }
  #status { font-size: 12px; color: #ffd; }
  .legend span { margin-right: 12px; font-size: 12px; }
  .chart { min-height: 220px; }
</style>
</head>
<body>
<header>
  <h1>Community analytics</h1>
  <form id="login">
    <input name="username" placeholder="username" autocomplete="username">
    <input name="password" type="password" placeholder="password"
           autocomplete="current-password">
    <button>Log in</button>
  </form>
  <input id="token" placeholder="or paste a bearer token" size="18">
  <input id="community" placeholder="community id (all)" size="14">
  <input id="segment" placeholder="segment id" size="10">
  <input id="from" type="date"> <input id="to" type="date">
  <select id="granularity">
    <option value="day">day</option><option value="week" selected>week</option>
    <option value="month">month</option>
  </select>
  <input id="campaign" placeholder="campaign id" size="12">
  <button id="load">Load</button>
  <span id="status"></span>
</header>
<main>
  <div class="cards" id="cards"></div>
  <section><h2>Member growth</h2><div class="chart" id="growth"></div></section>
  <section><h2>DAU / WAU / MAU and stickiness</h2><div class="chart" id="activity"></div>
    <div id="stickiness"></div></section>
  <section><h2>Activity by weekday and hour <small id="tz"></small></h2>
    <div class="chart" id="heatmap"></div></section>
  <section><h2>Funnel</h2><div class="chart" id="funnel"></div></section>
  <section><h2>Retention by join week</h2><div class="chart" id="retention"></div></section>
  <section><h2>Top contributors</h2><div id="contributors"></div></section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const COLORS = ["#3366cc", "#dc3912", "#ff9900", "#109618", "#990099"];
const CARDS = ["total_members", "new_members", "net_members", "dau", "wau", "mau",
  "stickiness", "interactions", "interaction_rate", "reach", "views_via_share", "posts"];
const WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const HOURS = Array.from({length: 24}, (_, h) => h);
// No link to Plotly's cloud and no logo: the page works offline and stays the operators' own.
const CONFIG = {displaylogo: false, responsive: true, showLink: false,
  modeBarButtonsToRemove: ["select2d", "lasso2d"]};
const LAYOUT = {height: 240, margin: {l: 44, r: 16, t: 28, b: 36}, font: {size: 11},
  legend: {orientation: "h", x: 0, y: 1.16}, hovermode: "x unified"};

function esc(text) {
  return String(text).replace(/[&<>"']/g, (c) => "&#" + c.charCodeAt(0) + ";");
}
function fmt(value) {
  if (value === null || value === undefined) return "-";
  if (!Number.isInteger(value)) return value.toFixed(value < 1 ? 3 : 1);
  return value.toLocaleString();
}

// Plotly keeps what it drew on the element (element.data): the browser test reads it back.
function plot(id, traces, layout) {
  return Plotly.react($(id), traces, {...LAYOUT, ...layout}, CONFIG);
}

function lineChart(id, dates, series, layout) {
  return plot(id, series.map((s, n) => ({type: "scatter", mode: "lines+markers", name: s.name,
    x: dates, y: s.values, yaxis: s.axis || "y",
    line: {color: COLORS[n % COLORS.length], width: 2}, marker: {size: 4}})), layout);
}

function heatmap(cells) {
  return plot("heatmap", [{type: "heatmap", z: cells, x: HOURS, y: WEEKDAYS, zmin: 0,
    colorscale: [[0, "#fbeee9"], [1, "#dc3912"]], xgap: 1, ygap: 1,
    hovertemplate: "%{y} %{x}:00: %{z} actions<extra></extra>"}],
  {yaxis: {autorange: "reversed"}, xaxis: {dtick: 3, ticksuffix: "h", zeroline: false},
    margin: {l: 40, r: 8, t: 8, b: 28}, hovermode: "closest"});
}

function renderCards(overview) {
  // A segment leaves out figures counted per event (posts, views...): show what came back.
  $("cards").innerHTML = CARDS.filter((name) => overview.figures[name]).map((name) => {
    const f = overview.figures[name];
    const c = f.change_pct;
    const cls = c === null ? "flat" : c >= 0 ? "up" : "down";
    const change = c === null ? "n/a" : `${c >= 0 ? "+" : ""}${c}%`;
    return `<div class="card" data-figure="${name}" data-value="${f.value}">` +
      `<div class="name">${name}</div>` +
      `<div class="value">${fmt(f.value)}</div>` +
      `<div class="${cls}">${change} <small>vs ${fmt(f.previous)}</small></div></div>`;
  }).join("");
}

function renderGrowth(overview) {
  const series = overview.series;
  return lineChart("growth", series.map((p) => p.start), [
    {name: "new members", values: series.map((p) => p.new_members)},
    {name: "net", values: series.map((p) => p.net)},
    {name: "active", values: series.map((p) => p.active_members)}],
  {yaxis: {rangemode: "tozero"}});
}

function renderActivity(activity) {
  const days = activity.days;
  const last = days[days.length - 1];
  $("stickiness").textContent = last
    ? `stickiness (avg DAU / MAU) on ${last.day}: ${fmt(last.stickiness)}` : "";
  return lineChart("activity", days.map((d) => d.day), [
    {name: "DAU", values: days.map((d) => d.dau)},
    {name: "WAU", values: days.map((d) => d.wau)},
    {name: "MAU", values: days.map((d) => d.mau)},
    {name: "stickiness", values: days.map((d) => d.stickiness), axis: "y2"}],
  {margin: {...LAYOUT.margin, r: 44},
    yaxis: {rangemode: "tozero"}, yaxis2: {overlaying: "y", side: "right", range: [0, 1],
      autorange: false, tickmode: "auto", nticks: 5, tickformat: ".0%", showgrid: false}});
}

function renderFunnel(data) {
  const steps = data.steps;
  return plot("funnel", [{type: "bar", orientation: "h", y: steps.map((s) => s.name),
    x: steps.map((s) => s.members), marker: {color: COLORS[0]}, textposition: "auto",
    text: steps.map((s) => s.members === null ? "no data yet" : `${s.members}` +
      (s.conversion_from_previous === null ? "" :
        ` (${(s.conversion_from_previous * 100).toFixed(0)}%)`)),
    hovertemplate: "%{y}: %{x}<extra></extra>"}],
  {height: 60 + 34 * steps.length, yaxis: {autorange: "reversed", automargin: true},
    margin: {l: 8, r: 16, t: 8, b: 28}, hovermode: "closest"});
}

// The triangle: cohort k has N - k weeks to show; later weeks are null and stay blank.
// The axes list every cohort and week even before any week has passed (all cells null).
function renderRetention(data) {
  const cohorts = data.cohorts;
  const weeks = Array.from({length: data.weeks}, (_, k) => `W${k + 1}`);
  const labels = cohorts.map((c) => `${c.week_start} (${c.size})`);
  return plot("retention", [{type: "heatmap", zmin: 0, zmax: 1, showscale: false,
    x: weeks, y: labels, z: cohorts.map((c) => c.retained), texttemplate: "%{z:.0%}",
    colorscale: [[0, "#eef3fc"], [1, "#3366cc"]], xgap: 1, ygap: 1,
    hovertemplate: "cohort %{y}, %{x}: %{z:.0%}<extra></extra>"}],
  {height: 60 + 24 * Math.max(cohorts.length, 3), hovermode: "closest",
    yaxis: {type: "category", categoryorder: "array", categoryarray: labels,
      range: [labels.length - 0.5, -0.5], automargin: true},
    xaxis: {type: "category", categoryorder: "array", categoryarray: weeks,
      range: [-0.5, weeks.length - 0.5], side: "top"},
    margin: {l: 8, r: 8, t: 24, b: 8}});
}

function renderContributors(data) {
  const rows = data.items.map((m) => `<tr data-member="${esc(m.member_id)}">` +
    `<td>${m.rank}. ${esc(m.member_id.slice(0, 8))}</td>` +
    `<td>${fmt(m.score)}</td><td>${m.band}</td><td>${m.previous_band}</td>` +
    `<td>${m.posts}</td><td>${m.interactions_received}</td></tr>`).join("");
  const bands = Object.entries(data.bands).map(([b, n]) => `${b}: ${n}`).join(" &middot; ");
  $("contributors").innerHTML = `<div>${bands}</div><table><tr><th>member</th><th>score</th>` +
    `<th>band</th><th>before</th><th>posts</th><th>received</th></tr>${rows}</table>`;
}

async function api(path, params) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v));
  const response = await fetch(`${path}?${query}`, {
    headers: {Authorization: `Bearer ${sessionStorage.getItem("token") || ""}`}});
  const body = await response.json();
  if (!response.ok) throw new Error(body.detail || response.statusText);
  return body;
}

function filters() {
  return {community_id: $("community").value.trim(), segment_id: $("segment").value.trim(),
    from: $("from").value, to: $("to").value, granularity: $("granularity").value};
}

async function load() {
  const f = filters();
  $("status").textContent = "loading...";
  try {
    if (!window.Plotly) throw new Error("the chart library did not load");
    const overview = await api("/v1/metrics/overview", f);
    renderCards(overview);
    await renderGrowth(overview);
    await renderActivity(await api("/v1/metrics/activity", f));
    // The heatmap counts actions per hour, not per member: a segment cannot split it.
    const heat = await api("/v1/metrics/activity-heatmap", {...f, segment_id: ""});
    $("tz").textContent = `(${heat.timezone}${f.segment_id ? ", all members" : ""})`;
    await heatmap(heat.cells);
    const campaign = $("campaign").value.trim();
    const funnel = campaign
      ? await api(`/v1/metrics/campaigns/${encodeURIComponent(campaign)}`,
          {segment_id: f.segment_id})
      : await api("/v1/metrics/funnels", {...f,
          steps: "member.registered,post.viewed,reaction.added,comment.created"});
    await renderFunnel(funnel);
    await renderRetention(await api("/v1/metrics/retention", f));
    renderContributors(await api("/v1/metrics/top-contributors", f));
    $("status").textContent = `complete up to ${overview.as_of || "no events yet"}`;
  } catch (error) {
    $("status").textContent = `error: ${error.message}`;
  }
  // Counts finished loads, so scripts (and the browser test) can wait for a fresh render.
  document.body.dataset.loads = String(Number(document.body.dataset.loads || 0) + 1);
}

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const response = await fetch("/v1/auth/token",
    {method: "POST", body: new URLSearchParams(new FormData(event.target))});
  const body = await response.json();
  if (!response.ok) { $("status").textContent = `login failed: ${body.detail}`; return; }
  sessionStorage.setItem("token", body.access_token);
  load();
});
$("token").addEventListener("change", () => {
  sessionStorage.setItem("token", $("token").value.trim());
});
$("load").addEventListener("click", load);
if (sessionStorage.getItem("token")) load();
</script>
</body>
</html>
"""
PAGE = TEMPLATE.replace("{{plotly}}", PLOTLY_URL)


@cache
def plotly_js() -> tuple[bytes, bytes]:
    """The library as the wheel ships it, and gzipped once: 4.8 MB is 1.5 MB on the wire."""
    raw = Path(str(PLOTLY.locate_file(f"plotly/package_data/{PLOTLY_JS}"))).read_bytes()
    return raw, gzip.compress(raw, compresslevel=6)


@router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
async def dashboard() -> HTMLResponse:
    return HTMLResponse(PAGE, headers={"Cache-Control": "no-cache"})


@router.get(f"/dashboard/static/{PLOTLY_JS}", include_in_schema=False)
async def chart_library(request: Request) -> Response:
    """Plotly, public like the page; its URL names the version, so browsers keep it for good."""
    raw, packed = await asyncio.to_thread(plotly_js)  # first call reads and compresses
    headers = {"Cache-Control": FOREVER, "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(packed, media_type="text/javascript", headers=headers)
    return Response(raw, media_type="text/javascript", headers=headers)
