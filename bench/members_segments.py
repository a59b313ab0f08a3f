"""Members benchmark: registration throughput and segment preview latency.

1. registration: N sign-ups through the members HTTP app (ASGI, in process, C concurrent
   clients; SQLite in a temp dir and PostgreSQL with ``--postgres``); registrations/s and
   latency p50/p95/p99. Baseline in the same run: plain INSERTs of the same rows.
2. segments: M members (100,000 by default) written straight into a fresh PostgreSQL
   database, then ``POST /v1/segments/preview`` for a set of rule shapes, R times each;
   latency p50/p95/p99 per shape. Baseline: ``SELECT count(*) FROM members``.

    .venv/bin/python bench/members_segments.py --postgres postgresql+asyncpg://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/members_segments.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from report import BenchRows
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from services.members.app import create_app
from services.members.models import Community, Member, MemberInterest, Membership
from services.members.settings import MembersSettings
from services.members.taxonomy import INTERESTS, Channel, Gender
from shared.auth import Principal, Role, TokenCodec
from shared.db import Database, utcnow
from shared.settings import LOCAL_JWT_SECRET

OPERATOR = {
    "Authorization": "Bearer "
    + TokenCodec(LOCAL_JWT_SECRET).issue(Principal("bench", Role.OPERATOR))
}
SHAPES: dict[str, dict[str, Any]] = {
    "one field": {"field": "gender", "values": ["female"]},
    "age band + region": {
        "all": [
            {"field": "age_band", "values": ["18-24", "25-34"]},
            {"field": "province", "values": ["CN-SH", "CN-ZJ"]},
        ]
    },
    "interests any": {"field": "interests", "values": ["tea", "coffee", "music"]},
    "active in 7 days + tier": {
        "all": [
            {"field": "active_within_days", "days": 7},
            {"field": "tier", "values": ["core_fan", "super_fan"]},
        ]
    },
    "nested or with community": {
        "any": [
            {"all": [{"field": "community", "values": ["c-1"]}, {"field": "points", "min": 2000}]},
            {"field": "joined_within_days", "days": 14},
            {"field": "interests", "match": "all", "values": ["fitness", "food"]},
        ]
    },
}


def percentiles(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": round(cuts[49], 2), "p95": round(cuts[94], 2), "p99": round(cuts[98], 2)}


async def timed(call: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await call()
    return (time.perf_counter() - started) * 1000


async def new_pg_database(admin_url: str) -> tuple[str, Callable[[], Awaitable[None]]]:
    name = f"bench_members_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"

    async def drop() -> None:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()

    return url, drop


def app_for(url: str) -> Any:
    settings = MembersSettings.model_validate({"database_url": url, "log_json": False})
    return create_app(settings, run_background=False)


async def registration(url: str, count: int, concurrency: int) -> dict[str, Any]:
    app = app_for(url)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            latencies: list[float] = []
            queue = iter(range(count))

            async def worker() -> None:
                for i in queue:
                    body = {
                        "nickname": f"fan{i}",
                        "email": f"fan{i}@example.com",
                        "country": "CN",
                        "province": "CN-SH",
                        "interests": ["tea"],
                    }

                    async def call(body: dict[str, Any] = body) -> None:
                        response = await client.post("/v1/members", json=body)
                        assert response.status_code == 201, response.text

                    latencies.append(await timed(call))

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed = time.perf_counter() - started
        db: Database = app.state.runtime.db
        rows = [
            {"id": str(uuid.uuid4()), "nickname": f"b{i}", "channel": "app",
             "marketing_consent": False, "points_balance": 0, "created_at": utcnow(),
             "updated_at": utcnow()}
            for i in range(count)
        ]  # fmt: skip
        baseline_started = time.perf_counter()
        for row in rows:
            async with db.session() as session:
                await session.execute(insert(Member).values(**row))
        baseline = time.perf_counter() - baseline_started
    return {
        "registrations": count,
        "concurrency": concurrency,
        "per_s": round(count / elapsed),
        "latency_ms": percentiles(latencies),
        "baseline_insert_per_s": round(count / baseline),
        "ratio_vs_baseline": round(baseline / elapsed, 3),
    }


async def seed(url: str, population: int, rng: random.Random) -> None:
    engine = create_async_engine(url)
    now = utcnow()
    owner = str(uuid.uuid4())
    batch = 10_000
    async with engine.begin() as conn:
        for start in range(0, population, batch):
            people, interests, memberships = [], [], []
            for i in range(start, min(start + batch, population)):
                member_id = owner if i == 0 else str(uuid.uuid4())
                active = rng.random() < 0.6
                people.append(
                    {"id": member_id, "nickname": f"m{i}",
                     "gender": rng.choice(list(Gender)).value,
                     "birth_year": rng.randrange(1955, 2012), "country": "CN",
                     "province": rng.choice(["CN-SH", "CN-BJ", "CN-GD", "CN-ZJ", "CN-SC"]),
                     "channel": rng.choice(list(Channel)).value,
                     "tier": rng.choice([None, "fan", "core_fan", "super_fan"]),
                     "points_balance": rng.randrange(0, 5000),
                     "marketing_consent": rng.random() < 0.4,
                     "created_at": now - timedelta(days=rng.randrange(0, 700)),
                     "last_active_at": now - timedelta(days=rng.randrange(60)) if active else None,
                     "updated_at": now}
                )  # fmt: skip
                for interest in rng.sample(sorted(INTERESTS), rng.randrange(0, 4)):
                    interests.append({"member_id": member_id, "interest": interest})
                for c in rng.sample(["c-1", "c-2", "c-3"], rng.randrange(0, 3)):
                    memberships.append(
                        {"community_id": c, "member_id": member_id, "role": "member",
                         "joined_at": now}
                    )  # fmt: skip
            await conn.execute(insert(Member), people)
            if start == 0:
                await conn.execute(
                    insert(Community),
                    [{"id": c, "name": c, "description": "", "rules": "", "visibility": "public",
                      "timezone": "Asia/Shanghai", "owner_id": owner, "invite_code": c,
                      "member_count": 0, "created_at": now, "updated_at": now}
                     for c in ("c-1", "c-2", "c-3")],
                )  # fmt: skip
            if interests:
                await conn.execute(insert(MemberInterest), interests)
            if memberships:
                await conn.execute(insert(Membership), memberships)
        if conn.dialect.name == "postgresql":
            await conn.execute(text("ANALYZE"))
    await engine.dispose()


async def segments(url: str, population: int, repeats: int) -> dict[str, Any]:
    app = app_for(url)
    async with app.router.lifespan_context(app):
        await seed(url, population, random.Random(7))
        transport = httpx.ASGITransport(app=app)
        results: dict[str, Any] = {}
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            db: Database = app.state.runtime.db

            async def count_all() -> None:
                async with db.session() as session:
                    await session.scalar(select(func.count()).select_from(Member))

            baseline = [await timed(count_all) for _ in range(repeats)]
            results["baseline SELECT count(*)"] = {"latency_ms": percentiles(baseline)}
            for name, rules in SHAPES.items():
                found: list[int] = []

                async def preview(rules: dict[str, Any] = rules, found: list[int] = found) -> None:
                    response = await client.post(
                        "/v1/segments/preview", json={"rules": rules}, headers=OPERATOR
                    )
                    assert response.status_code == 200, response.text
                    found.append(response.json()["count"])

                latencies = [await timed(preview) for _ in range(repeats)]
                results[name] = {"members": found[-1], "latency_ms": percentiles(latencies)}
    return {"population": population, "repeats": repeats, "shapes": results}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"registration": {}, "segments": {}}
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_url = f"sqlite+aiosqlite:///{Path(tmp) / 'members.db'}"
        report["registration"]["sqlite"] = await registration(
            sqlite_url, args.registrations, args.concurrency
        )
        if not args.postgres:
            report["segments"]["sqlite"] = await segments(
                f"sqlite+aiosqlite:///{Path(tmp) / 'segments.db'}", args.population, args.repeats
            )
    if args.postgres:
        url, drop = await new_pg_database(args.postgres)
        try:
            report["registration"]["postgresql"] = await registration(
                url, args.registrations, args.concurrency
            )
        finally:
            await drop()
        url, drop = await new_pg_database(args.postgres)
        try:
            report["segments"]["postgresql"] = await segments(url, args.population, args.repeats)
        finally:
            await drop()
    return report


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", help="admin URL of a PostgreSQL server (asyncpg)")
    parser.add_argument("--registrations", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--population", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.registrations, args.population, args.repeats = 200, 5_000, 30
    return args


def bench_rows(report: dict[str, Any], args: argparse.Namespace) -> BenchRows:
    rows = BenchRows(__file__)
    for lane, reg in report["registration"].items():
        latency = reg["latency_ms"]
        rows.add(
            lane=lane,
            what=f"registrations via POST /v1/members, {reg['registrations']} "
            f"x {reg['concurrency']} clients (ASGI in process)",
            figure=reg["per_s"],
            unit="req/s",
            baseline="plain INSERT of the same rows, 1 txn each",
            baseline_figure=reg["baseline_insert_per_s"],
            ratio=reg["ratio_vs_baseline"],
            p50_ms=latency["p50"],
            p95_ms=latency["p95"],
            p99_ms=latency["p99"],
        )
    for lane, seg in report["segments"].items():
        shapes = dict(seg["shapes"])
        base = shapes.pop("baseline SELECT count(*)")["latency_ms"]
        full_size = lane == "postgresql" and seg["population"] >= 100_000
        for shape, result in shapes.items():
            latency = result["latency_ms"]
            rows.add(
                lane=lane,
                what=f"segment preview '{shape}', {seg['population']:,} members",
                figure=latency["p95"],
                unit="ms p95",
                baseline="SELECT count(*) FROM members",
                baseline_figure=base["p95"],
                p50_ms=latency["p50"],
                p95_ms=latency["p95"],
                p99_ms=latency["p99"],
                target="p95 < 100 ms (PostgreSQL, 100k members)",
                met=latency["p95"] < 100 if full_size else None,
                note=f"{result['members']} members matched, {seg['repeats']} runs",
            )
    return rows


if __name__ == "__main__":
    arguments = parse_args()
    result = asyncio.run(main(arguments))
    print(json.dumps(result, indent=2))
    bench_rows(result, arguments).emit()
