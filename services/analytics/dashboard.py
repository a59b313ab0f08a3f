"""The operators' dashboard: one self-contained page (inline SVG charts, no CDN, works offline).

The page holds no data: it calls ``/v1/metrics/...`` with a bearer token the
operator pastes or obtains from ``POST /v1/auth/token`` through the gateway.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(tags=["dashboard"])

PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Community analytics</title>
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
  svg text { font-size: 10px; fill: #555; }
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
  <section><h2>Member growth</h2><div id="growth"></div></section>
  <section><h2>DAU / WAU / MAU and stickiness</h2><div id="activity"></div></section>
  <section><h2>Activity by weekday and hour <small id="tz"></small></h2>
    <div id="heatmap"></div></section>
  <section><h2>Funnel</h2><div id="funnel"></div></section>
  <section><h2>Retention by join week</h2><div id="retention"></div></section>
  <section><h2>Top contributors</h2><div id="contributors"></div></section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const NS = "http://www.w3.org/2000/svg";
const COLORS = ["#3366cc", "#dc3912", "#ff9900", "#109618", "#990099"];
const CARDS = ["total_members", "new_members", "net_members", "dau", "wau", "mau",
  "stickiness", "interactions", "interaction_rate", "reach", "views_via_share", "posts"];

function esc(text) {
  return String(text).replace(/[&<>"']/g, (c) => "&#" + c.charCodeAt(0) + ";");
}
function svg(tag, attrs, parent) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}
function fmt(value) {
  if (value === null || value === undefined) return "-";
  if (!Number.isInteger(value)) return value.toFixed(value < 1 ? 3 : 1);
  return value.toLocaleString();
}

function lineChart(target, labels, series) {
  target.innerHTML = "";
  const W = 460, H = 200, L = 36, B = 22;
  const root = svg("svg", {viewBox: `0 0 ${W} ${H}`, width: "100%"}, target);
  const max = Math.max(1, ...series.flatMap((s) => s.values.filter((v) => v !== null)));
  const x = (i) => L + (labels.length < 2 ? 0 : i * (W - L - 8) / (labels.length - 1));
  const y = (v) => H - B - v / max * (H - B - 8);
  svg("line", {x1: L, y1: H - B, x2: W, y2: H - B, stroke: "#ccc"}, root);
  svg("text", {x: 2, y: 12}, root).textContent = fmt(max);
  svg("text", {x: 2, y: H - B}, root).textContent = "0";
  const step = Math.max(1, Math.ceil(labels.length / 6));
  labels.forEach((label, i) => {
    if (i % step === 0) svg("text", {x: x(i) - 14, y: H - 6}, root).textContent = label;
  });
  series.forEach((s, n) => {
    const pts = s.values.map((v, i) => v === null ? null : `${x(i)},${y(v)}`).filter(Boolean);
    svg("polyline", {points: pts.join(" "), fill: "none", stroke: COLORS[n % COLORS.length],
      "stroke-width": 2, "data-series": s.name}, root);
  });
  const legend = document.createElement("div");
  legend.className = "legend";
  legend.innerHTML = series.map((s, n) =>
    `<span style="color:${COLORS[n % COLORS.length]}">&#9632; ${esc(s.name)}</span>`).join("");
  target.appendChild(legend);
}

function barChart(target, rows) {
  target.innerHTML = "";
  const W = 460, row = 26, H = rows.length * row + 4;
  const root = svg("svg", {viewBox: `0 0 ${W} ${H}`, width: "100%"}, target);
  const max = Math.max(1, ...rows.map((r) => r.value || 0));
  rows.forEach((r, i) => {
    svg("text", {x: 0, y: i * row + 16}, root).textContent = r.label;
    const width = (r.value || 0) / max * (W - 220);
    svg("rect", {x: 110, y: i * row + 4, width: width, height: row - 8, fill: COLORS[0],
      "data-value": r.value === null ? "" : r.value}, root);
    svg("text", {x: 116 + width, y: i * row + 16}, root).textContent = r.note;
  });
}

function heatmap(target, cells) {
  target.innerHTML = "";
  const days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
  const W = 460, C = (W - 34) / 24, R = 20;
  const root = svg("svg", {viewBox: `0 0 ${W} ${7 * R + 16}`, width: "100%"}, target);
  const max = Math.max(1, ...cells.flat());
  cells.forEach((hours, d) => {
    svg("text", {x: 0, y: d * R + 14}, root).textContent = days[d];
    hours.forEach((v, h) => {
      const rect = svg("rect", {x: 30 + h * C, y: d * R, width: C - 1, height: R - 1,
        fill: `rgba(220, 57, 18, ${v ? 0.1 + 0.9 * v / max : 0.03})`,
        "data-weekday": d, "data-hour": h, "data-actions": v}, root);
      svg("title", {}, rect).textContent = `${days[d]} ${h}:00 - ${v} actions`;
    });
  });
  for (let h = 0; h < 24; h += 3) {
    svg("text", {x: 30 + h * C, y: 7 * R + 12}, root).textContent = `${h}h`;
  }
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

function renderCards(overview) {
  $("cards").innerHTML = CARDS.map((name) => {
    const f = overview.figures[name];
    const c = f.change_pct;
    const cls = c === null ? "flat" : c >= 0 ? "up" : "down";
    const change = c === null ? "n/a" : `${c >= 0 ? "+" : ""}${c}%`;
    return `<div class="card" data-figure="${name}"><div class="name">${name}</div>` +
      `<div class="value">${fmt(f.value)}</div>` +
      `<div class="${cls}">${change} <small>vs ${fmt(f.previous)}</small></div></div>`;
  }).join("");
}

function renderRetention(data) {
  const head = Array.from({length: data.weeks}, (_, k) => `<th>W${k + 1}</th>`).join("");
  const rows = data.cohorts.map((c) => `<tr><td>${c.week_start}</td><td>${c.size}</td>` +
    c.retained.map((r) => r === null ? "<td></td>" :
      `<td style="background:rgba(51,102,204,${0.1 + 0.9 * r})">${(r * 100).toFixed(0)}%</td>`
    ).join("") + "</tr>").join("");
  $("retention").innerHTML =
    `<table><tr><th>cohort</th><th>size</th>${head}</tr>${rows}</table>`;
}

function renderContributors(data) {
  const rows = data.items.map((m) => `<tr><td>${m.rank}. ${esc(m.member_id.slice(0, 8))}</td>` +
    `<td>${fmt(m.score)}</td><td>${m.band}</td><td>${m.previous_band}</td>` +
    `<td>${m.posts}</td><td>${m.interactions_received}</td></tr>`).join("");
  const bands = Object.entries(data.bands).map(([b, n]) => `${b}: ${n}`).join(" &middot; ");
  $("contributors").innerHTML = `<div>${bands}</div><table><tr><th>member</th><th>score</th>` +
    `<th>band</th><th>before</th><th>posts</th><th>received</th></tr>${rows}</table>`;
}

function renderFunnel(data) {
  barChart($("funnel"), data.steps.map((s) => ({label: s.name, value: s.members,
    note: s.members === null ? "no data yet" :
      `${s.members}` + (s.conversion_from_previous === null ? "" :
        ` (${(s.conversion_from_previous * 100).toFixed(0)}%)`)})));
}

async function load() {
  const f = filters();
  $("status").textContent = "loading...";
  try {
    const overview = await api("/v1/metrics/overview", f);
    renderCards(overview);
    lineChart($("growth"), overview.series.map((p) => p.start.slice(5)), [
      {name: "new members", values: overview.series.map((p) => p.new_members)},
      {name: "net", values: overview.series.map((p) => p.net)},
      {name: "active", values: overview.series.map((p) => p.active_members)}]);
    const activity = await api("/v1/metrics/activity", f);
    const days = activity.days;
    lineChart($("activity"), days.map((d) => d.day.slice(5)), [
      {name: "DAU", values: days.map((d) => d.dau)},
      {name: "WAU", values: days.map((d) => d.wau)},
      {name: "MAU", values: days.map((d) => d.mau)}]);
    const last = days[days.length - 1];
    $("activity").insertAdjacentHTML("beforeend",
      `<div>stickiness (avg DAU / MAU) on ${last.day}: ${fmt(last.stickiness)}</div>`);
    const heat = await api("/v1/metrics/activity-heatmap", f);
    $("tz").textContent = `(${heat.timezone})`;
    heatmap($("heatmap"), heat.cells);
    const campaign = $("campaign").value.trim();
    const funnel = campaign
      ? await api(`/v1/metrics/campaigns/${encodeURIComponent(campaign)}`, {})
      : await api("/v1/metrics/funnels", {...f,
          steps: "member.registered,post.viewed,reaction.added,comment.created"});
    renderFunnel(funnel);
    renderRetention(await api("/v1/metrics/retention", f));
    renderContributors(await api("/v1/metrics/top-contributors", f));
    $("status").textContent = `complete up to ${overview.as_of || "no events yet"}`;
  } catch (error) {
    $("status").textContent = `error: ${error.message}`;
  }
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


@router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
async def dashboard() -> HTMLResponse:
    return HTMLResponse(PAGE, headers={"Cache-Control": "no-cache"})
