"""Mixed load through the gateway with every service running as its own process.

Starts the platform (Tansu + six services + gateway, SQLite under a temp dir; then, with
``--postgres``, again on new databases on that server), fills it with ``shared.demo``
(small), then runs C concurrent clients for D seconds with a realistic mix:

- 70% reads: community feeds (``GET /v1/posts``) and the member's own profile;
- 20% interactions: views and likes on posts (first-time per member and post);
- 10% campaign actions: a daily check-in (first time per member) or the
  challenge's leaderboard when everyone has checked in.

Prints requests/s, latency p50/p95/p99 (overall and per kind of request), the error rate,
the CPU each process (broker, services, gateway, this driver; on PostgreSQL also the
database server's processes) spent per request, event-to-metric freshness sampled during
the run (``now - as_of`` of the analytics overview), and the gateway's overhead: the same
profile read sent directly to the members service and through the gateway, one at a time
and alternating, in the same run.

The driver shares the machine's cores with the platform, so by default it sends
the load over a lean keep-alive HTTP/1.1 client (~0.15 ms CPU a request, httpx
~1.5 ms); ``--client httpx`` measures with httpx instead.

    .venv/bin/python bench/load_mix.py --duration 60 --concurrency 32
    .venv/bin/python bench/load_mix.py --postgres postgresql+asyncpg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import httpx
from clients import LeanClient
from report import BenchRows
from scratch_databases import fresh_databases

from shared.broker import free_port
from shared.demo import Demo
from shared.runner import Platform
from shared.settings import SERVICE_PORTS


def percentiles(values: list[float]) -> dict[str, float]:
    if len(values) < 2:
        return {"p50": values[0] if values else 0.0, "p95": 0.0, "p99": 0.0}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": round(cuts[49], 1), "p95": round(cuts[94], 1), "p99": round(cuts[98], 1)}


class Status(Protocol):
    status_code: int


class Requester(Protocol):
    async def request(self, method: str, path: str, **kwargs: Any) -> Status: ...


class Load:
    def __init__(self, client: Requester, demo: Demo, seed: int) -> None:
        self.http = client
        self.demo = demo
        self.rng = random.Random(seed)
        self.latencies: list[float] = []
        self.latencies_by_kind: dict[str, list[float]] = {}
        self.statuses: Counter[int] = Counter()
        self.kinds: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.members = [p for p in demo.people if p["id"] in demo.tokens]
        self.untouched = [
            (m["id"], post["id"]) for post in demo.posts for m in self.members
        ]  # fmt: skip
        self.rng.shuffle(self.untouched)
        self.checkin_campaign: str | None = None
        # Only members of the challenge's community are eligible to check in.
        self.not_checked_in = [m["id"] for m in demo.communities[0].get("fans", [])]

    async def request(self, kind: str, method: str, path: str, **kwargs: Any) -> None:
        started = time.perf_counter()
        response = await self.http.request(method, path, **kwargs)
        elapsed_ms = (time.perf_counter() - started) * 1000
        self.latencies.append(elapsed_ms)
        self.latencies_by_kind.setdefault(kind, []).append(elapsed_ms)
        self.statuses[response.status_code] += 1
        self.kinds[kind] += 1
        if response.status_code >= 400:
            self.errors[f"{kind} {response.status_code}"] += 1

    async def one(self) -> None:
        roll = self.rng.random()
        member = self.rng.choice(self.members)
        headers = self.demo.tokens[member["id"]]
        if roll < 0.5:
            community = self.rng.choice(self.demo.communities)
            await self.request("feed", "GET", "/v1/posts",
                               params={"community_id": community["id"], "limit": 20},
                               headers=headers)  # fmt: skip
        elif roll < 0.7:
            await self.request("profile", "GET", f"/v1/members/{member['id']}", headers=headers)
        elif roll < 0.9 and self.untouched:
            member_id, post_id = self.untouched.pop()
            headers = self.demo.tokens[member_id]
            if roll < 0.8:
                await self.request("view", "POST", f"/v1/posts/{post_id}/views", json={},
                                   headers=headers)  # fmt: skip
            else:
                await self.request("like", "POST", f"/v1/posts/{post_id}/reactions",
                                   json={"kind": "like"}, headers=headers)  # fmt: skip
        elif self.checkin_campaign and self.not_checked_in:
            member_id = self.not_checked_in.pop()
            await self.request(
                "check-in", "POST", f"/v1/campaigns/{self.checkin_campaign}/checkins", json={},
                headers=self.demo.tokens[member_id],
            )  # fmt: skip
        elif self.checkin_campaign:
            await self.request("leaderboard", "GET",
                               f"/v1/campaigns/{self.checkin_campaign}/leaderboard",
                               headers=headers)  # fmt: skip
        else:
            await self.request("profile", "GET", f"/v1/members/{member['id']}", headers=headers)

    async def run(self, duration_s: float, concurrency: int) -> float:
        deadline = time.perf_counter() + duration_s

        async def worker() -> None:
            while time.perf_counter() < deadline:
                await self.one()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started


class ProcessCpu:
    """CPU seconds each platform process (and this driver) used since construction; with
    ``postgres``, also the PostgreSQL server's processes on this machine, summed (a backend
    that exits in between takes its CPU with it, so that figure is a floor)."""

    def __init__(self, platform: Platform, *, postgres: bool = False) -> None:
        self.pids = {name: p.pid for name, p in platform.processes.items()}
        broker = getattr(platform.broker, "_process", None)  # Tansu: its CPU is the bus's cost
        if broker is not None:
            self.pids["broker"] = broker.pid
        self.pids["driver"] = os.getpid()
        self.postgres = postgres
        self.start = {name: self.read(pid) for name, pid in self.pids.items()}
        self.postgres_start = self.postgres_processes() if postgres else {}

    @staticmethod
    def read(pid: int) -> float:
        try:
            return ProcessCpu.seconds(Path(f"/proc/{pid}/stat").read_text())
        except OSError:
            return 0.0

    @staticmethod
    def seconds(stat: str) -> float:
        """User + system CPU seconds from the text of ``/proc/<pid>/stat``."""
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def postgres_processes() -> dict[int, float]:
        found = {}
        for path in Path("/proc").glob("[0-9]*/stat"):
            try:
                stat = path.read_text()
            except OSError:
                continue
            if "(postgres)" in stat:
                found[int(path.parent.name)] = ProcessCpu.seconds(stat)
        return found

    def used(self) -> dict[str, float]:
        used = {name: self.read(pid) - self.start[name] for name, pid in self.pids.items()}
        if self.postgres:
            now = self.postgres_processes()
            used["postgres"] = sum(
                cpu - self.postgres_start.get(pid, 0.0) for pid, cpu in now.items()
            )
        return used


async def freshness(client: httpx.AsyncClient, operator: dict[str, str], stop: asyncio.Event,
                    samples: list[float]) -> None:  # fmt: skip
    """``now - as_of`` of the analytics overview, while the load runs."""
    while not stop.is_set():
        response = await client.get("/v1/metrics/overview", headers=operator)
        as_of = response.json().get("as_of") if response.status_code == 200 else None
        if as_of:
            lag = datetime.now(UTC) - datetime.fromisoformat(as_of.replace("Z", "+00:00"))
            samples.append(lag.total_seconds() * 1000)
        await asyncio.sleep(0.5)


async def gateway_overhead(platform: Platform, demo: Demo, rounds: int) -> dict[str, Any]:
    """The same profile read, sent directly to members and through the gateway.

    The two alternate read by read (which goes first alternates too), so both meet the
    same background: right after the load, consumers are still draining what it left.
    """
    member = next(p for p in demo.people if p["id"] in demo.tokens)
    headers = demo.tokens[member["id"]]
    path = f"/v1/members/{member['id']}"
    results: dict[str, list[float]] = {"direct": [], "gateway": []}
    async with (
        httpx.AsyncClient(base_url=platform.url("members"), timeout=30) as to_members,
        httpx.AsyncClient(base_url=platform.gateway_url, timeout=30) as to_gateway,
    ):
        clients = {"direct": to_members, "gateway": to_gateway}
        for _ in range(20):
            await to_members.get(path, headers=headers)
            await to_gateway.get(path, headers=headers)
        for n in range(rounds):
            for name in ("direct", "gateway") if n % 2 == 0 else ("gateway", "direct"):
                started = time.perf_counter()
                response = await clients[name].get(path, headers=headers)
                results[name].append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, response.text
    direct, gateway = percentiles(results["direct"]), percentiles(results["gateway"])
    return {
        "direct_ms": direct,
        "gateway_ms": gateway,
        "overhead_ratio_p50": round(gateway["p50"] / direct["p50"], 2),
        "added_ms_p50": round(gateway["p50"] - direct["p50"], 1),
    }


async def prepare_campaign(client: httpx.AsyncClient, demo: Demo, load: Load) -> None:
    """A check-in challenge in the first community, live now, if the campaigns API answers."""
    now = datetime.now(UTC)
    body = {
        "name": f"load check-in {uuid.uuid4().hex[:6]}", "type": "checkin",
        "objective": "engagement", "community_id": demo.communities[0]["id"],
        "starts_at": now.isoformat(), "ends_at": now.replace(year=now.year + 1).isoformat(),
        "rules": {"days_required": 21, "mode": "consecutive", "makeup_cards": 2},
    }  # fmt: skip
    created = await client.post("/v1/campaigns", json=body, headers=demo.operator)
    if created.status_code != 201:
        print(f"campaigns: no check-in campaign ({created.status_code}); mix uses reads instead")
        return
    campaign = created.json()
    launched = await client.post(f"/v1/campaigns/{campaign['id']}/launch", headers=demo.operator)
    if launched.status_code == 200:
        load.checkin_campaign = campaign["id"]


async def main(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The SQLite lane, then the PostgreSQL lane with ``--postgres``."""
    reports = {"sqlite": await run_lane(args, {})}
    if args.postgres:
        # A new database per service, dropped afterwards: each run starts empty.
        names = [f"loadmix_{uuid.uuid4().hex[:8]}_{service}" for service in SERVICE_PORTS]
        async with fresh_databases(names, args.postgres) as urls:
            env = {
                f"{service.upper()}_DATABASE_URL": url
                for service, url in zip(SERVICE_PORTS, urls, strict=True)
            }
            reports["postgresql"] = await run_lane(args, env)
    return reports


async def run_lane(args: argparse.Namespace, databases: dict[str, str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        # Filling the platform registers and signs in members anonymously from one address.
        env = {
            "COMMUNITY_LOG_LEVEL": "WARNING",
            "GATEWAY_RATE_LIMIT_PER_MIN": "1000000",
            "GATEWAY_ANONYMOUS_RATE_LIMIT_PER_MIN": "1000000",
            **databases,
        }
        with Platform(Path(tmp), gateway_port=free_port(), free_ports=True, env=env) as platform:
            limits = httpx.Limits(max_connections=256)
            async with httpx.AsyncClient(
                base_url=platform.gateway_url, timeout=30, limits=limits
            ) as client:
                demo = Demo(client, seed=args.seed, members=args.members, active=args.active,
                            admin=("admin", "admin"))  # fmt: skip
                await demo.run()
                lean = LeanClient(platform.gateway_url)
                load = Load(client if args.client == "httpx" else lean, demo, args.seed)
                await prepare_campaign(client, demo, load)
                stop, samples = asyncio.Event(), []
                probe = asyncio.create_task(freshness(client, demo.operator, stop, samples))
                cpu = ProcessCpu(platform, postgres=bool(databases))
                # For profilers attaching to the services: the timed load starts now.
                print(f"load: {args.duration:g} s x {args.concurrency} clients", file=sys.stderr,
                      flush=True)  # fmt: skip
                elapsed = await load.run(args.duration, args.concurrency)
                cpu_s = cpu.used()
                stop.set()
                await probe
                lean.close()
                total = sum(load.statuses.values())
                errors = sum(n for status, n in load.statuses.items() if status >= 400)
                report = {
                    "duration_s": round(elapsed, 1),
                    "concurrency": args.concurrency,
                    "requests": total,
                    "requests_per_s": round(total / elapsed),
                    "latency_ms": percentiles(load.latencies),
                    # Which requests make the tail: the same figures per kind of request.
                    "latency_ms_by_kind": {
                        kind: percentiles(values)
                        for kind, values in sorted(load.latencies_by_kind.items())
                    },
                    "error_rate": round(errors / total, 4) if total else None,
                    "client": args.client,
                    "statuses": dict(load.statuses),
                    "errors_by_kind": dict(load.errors),
                    "cpu_ms_per_request": {
                        name: round(seconds * 1000 / total, 3) if total else None
                        for name, seconds in cpu_s.items()
                    },
                    "mix": dict(load.kinds),
                    "freshness_ms": percentiles(samples) if samples else "no as_of field",
                }
            report["gateway_overhead"] = await gateway_overhead(platform, demo, args.rounds)
    return report


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--members", type=int, default=400)
    parser.add_argument("--active", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=500, help="gateway overhead samples")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--postgres", help="also a PostgreSQL lane on this server, e.g. "
                        "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres (its database "
                        "is ignored; one per service is created, and dropped after)")  # fmt: skip
    parser.add_argument("--client", choices=("lean", "httpx"), default="lean",
                        help="the load's client: keep-alive HTTP/1.1 (lean) or httpx")  # fmt: skip
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.members, args.active, args.rounds = 10, 60, 30, 100
    return args


def bench_rows(reports: dict[str, dict[str, Any]], args: argparse.Namespace) -> BenchRows:
    rows = BenchRows(__file__)
    for lane, report in reports.items():
        add_rows(rows, lane, report, args)
    return rows


def add_rows(rows: BenchRows, lane: str, report: dict[str, Any], args: argparse.Namespace) -> None:
    latency, errors = report["latency_ms"], report["error_rate"]
    rps = report["requests_per_s"]
    rows.add(
        lane=lane,
        what=f"mixed load via the gateway (70% reads, 20% interactions, 10% campaign), "
        f"{report['concurrency']} clients, {report['duration_s']} s",
        figure=rps,
        unit="req/s",
        baseline="none in this bench",
        p50_ms=latency["p50"],
        p95_ms=latency["p95"],
        p99_ms=latency["p99"],
        target=">= 500 req/s, p99 < 200 ms, 0 errors",
        met=rps >= 500 and latency["p99"] < 200 and errors == 0,
        note=f"error rate {errors}, statuses {report['statuses']}, {report['client']} client, "
        f"CPU ms/request {report['cpu_ms_per_request']}",
    )
    overhead = report["gateway_overhead"]
    gateway, direct = overhead["gateway_ms"], overhead["direct_ms"]
    rows.add(
        lane=lane,
        what=f"profile read through the gateway, one at a time, {args.rounds} rounds "
        "alternating with the direct read",
        figure=gateway["p50"],
        unit="ms p50",
        baseline="the same read sent directly to members",
        baseline_figure=direct["p50"],
        ratio=overhead["overhead_ratio_p50"],
        p50_ms=gateway["p50"],
        p95_ms=gateway["p95"],
        p99_ms=gateway["p99"],
        target="<= 1.5x direct",
        met=overhead["overhead_ratio_p50"] <= 1.5,
        note=f"the gateway adds {overhead['added_ms_p50']} ms at p50",
    )
    fresh = report["freshness_ms"]
    if isinstance(fresh, dict):
        rows.add(
            lane=lane,
            what="event-to-metric freshness during the load (now - overview as_of)",
            figure=fresh["p95"],
            unit="ms p95",
            baseline="none in this bench",
            p50_ms=fresh["p50"],
            p95_ms=fresh["p95"],
            p99_ms=fresh["p99"],
            target="p95 < 1 s",
            met=fresh["p95"] < 1000,
        )


if __name__ == "__main__":
    arguments = parse_args()
    result = asyncio.run(main(arguments))
    print(json.dumps(result, indent=2))
    bench_rows(result, arguments).emit()
