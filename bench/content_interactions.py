"""Content benchmark: reaction and comment writes, community feed reads.

Everything runs in this process: the content app behind httpx's ASGI transport, C
concurrent clients, SQLite in a temp dir (and PostgreSQL with ``--postgres``).

1. reactions: N ``POST /v1/posts/{id}/reactions`` by distinct members on 50 posts (each one
   a unique row, an atomic counter bump and an outbox event in one transaction);
2. comments: N ``POST /v1/posts/{id}/comments`` (screening against 20 watched words, PII
   masking, counter bump, outbox event);
3. feed: N ``GET /v1/posts?community_id=..&limit=20`` (a page of 20 posts with counters).

Baselines measured in the same run, same concurrency:
- bare INSERT: one row per transaction straight through SQLAlchemy on the same database;
- bare endpoint: a FastAPI route returning a constant through the same ASGI transport.

    .venv/bin/python bench/content_interactions.py --quick
    .venv/bin/python bench/content_interactions.py --postgres postgresql+asyncpg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from aiokafka.structs import ConsumerRecord
from fastapi import FastAPI
from report import BenchRows
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.content.app import create_app
from services.content.settings import ContentSettings
from shared.app import ServiceRuntime
from shared.auth import Principal, Role, TokenCodec
from shared.events.contracts.members import CommunityCreated, MemberJoinedCommunity
from shared.events.envelope import CloudEvent
from shared.events.registry import EventData, spec_of
from shared.settings import LOCAL_JWT_SECRET

CODEC = TokenCodec(LOCAL_JWT_SECRET)


def headers_for(role: Role, subject: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {CODEC.issue(Principal(subject=subject, role=role))}"}


@dataclass
class Result:
    name: str
    latencies_ms: list[float]
    elapsed_s: float

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.elapsed_s

    def pct(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def measure(
    name: str, n: int, concurrency: int, op: Callable[[int], Awaitable[None]]
) -> Result:
    latencies: list[float] = []
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            start = time.perf_counter()
            await op(i)
            latencies.append((time.perf_counter() - start) * 1000)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Result(name, latencies, time.perf_counter() - start)


async def deliver(runtime: ServiceRuntime, items: list[EventData]) -> None:
    for data in items:
        envelope = CloudEvent(
            source="/services/members", type=spec_of(data).name, data=data.model_dump(mode="json")
        )
        value = envelope.to_json()
        record = ConsumerRecord(
            "community.members.v1", 0, 0, 0, 0, b"k", value, None, 1, len(value), []
        )
        await runtime.consumer.handle(record)


@asynccontextmanager
async def content_app(url: str) -> AsyncIterator[tuple[httpx.AsyncClient, ServiceRuntime]]:
    settings = ContentSettings.model_validate({"database_url": url, "log_json": False})
    app = create_app(settings, run_background=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            yield client, app.state.runtime


def bare_app() -> FastAPI:
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"status": "ok"}

    return app


async def run_lane(label: str, url: str, n: int, concurrency: int) -> list[Result]:
    results: list[Result] = []
    async with content_app(url) as (client, runtime):
        community = str(uuid.uuid4())
        members = [str(uuid.uuid4()) for _ in range(n)]
        now = datetime.now(UTC)
        await deliver(
            runtime,
            [
                CommunityCreated(
                    community_id=community,
                    name="bench",
                    owner_id=members[0],
                    visibility="public",
                    created_at=now,
                )
            ],
        )
        await deliver(
            runtime,
            [
                MemberJoinedCommunity(
                    community_id=community, member_id=m, role="member", joined_at=now
                )
                for m in members
            ],
        )
        operator = headers_for(Role.OPERATOR, str(uuid.uuid4()))
        for word in [f"banned{k}" for k in range(19)] + ["代购"]:
            body = {"community_id": community, "value": word, "action": "mask"}
            response = await client.post("/v1/moderation/rules", json=body, headers=operator)
            assert response.status_code == 201, response.text
        post_ids = []
        for k in range(50):
            body = {
                "type": "article",
                "community_id": community,
                "title": f"Post {k}",
                "body": "Steam the milk to 60 degrees, then pour from the centre. " * 8,
            }
            response = await client.post("/v1/posts", json=body, headers=operator)
            assert response.status_code == 201, response.text
            post_ids.append(response.json()["id"])
        member_headers = [headers_for(Role.MEMBER, m) for m in members]

        async def react(i: int) -> None:
            response = await client.post(
                f"/v1/posts/{post_ids[i % 50]}/reactions",
                json={"kind": "like"},
                headers=member_headers[i],
            )
            assert response.status_code == 201, response.text

        async def comment(i: int) -> None:
            response = await client.post(
                f"/v1/posts/{random.choice(post_ids)}/comments",
                json={"body": f"Lovely pour, 谢谢 {i}! call me on 13812345678"},
                headers=member_headers[i],
            )
            assert response.status_code == 201, response.text

        async def feed(i: int) -> None:
            response = await client.get(
                f"/v1/posts?community_id={community}&limit=20", headers=member_headers[i]
            )
            assert response.status_code == 200, response.text
            assert len(response.json()["items"]) == 20

        results.append(await measure(f"{label} reaction write", n, concurrency, react))
        results.append(await measure(f"{label} comment write", n, concurrency, comment))
        results.append(await measure(f"{label} feed read (20)", n, concurrency, feed))
        # The counters must be exact after the burst.
        total = 0
        for post_id in post_ids:
            read = await client.get(f"/v1/posts/{post_id}", headers=operator)
            total += read.json()["counters"]["likes"]
        assert total == n, f"likes {total} != {n}"

    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.execute(
            text("CREATE TABLE bench_baseline (id VARCHAR(36) PRIMARY KEY, v INTEGER NOT NULL)")
        )

    async def bare_insert(i: int) -> None:
        async with engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO bench_baseline (id, v) VALUES (:id, :v)"),
                {"id": str(uuid.uuid4()), "v": i},
            )

    results.append(await measure(f"{label} baseline bare INSERT", n, concurrency, bare_insert))
    await engine.dispose()
    return results


async def bare_endpoint(n: int, concurrency: int) -> Result:
    transport = httpx.ASGITransport(app=bare_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:

        async def ping(_: int) -> None:
            response = await client.get("/ping")
            assert response.status_code == 200

        return await measure("baseline bare FastAPI endpoint", n, concurrency, ping)


def report(results: list[Result], endpoint: Result) -> None:
    print(
        f"{'what':<36} {'n':>6} {'req/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
        f"{'vs INSERT':>10} {'vs endpoint':>12}"
    )
    baseline_insert = {r.name.split()[0]: r for r in results if "bare INSERT" in r.name}
    for r in [*results, endpoint]:
        insert = baseline_insert.get(r.name.split()[0])
        vs_insert = f"{r.rate / insert.rate:.3f}" if insert else "-"
        print(
            f"{r.name:<36} {len(r.latencies_ms):>6} {r.rate:>9.0f} {r.pct(50):>8.1f} "
            f"{r.pct(95):>8.1f} {r.pct(99):>8.1f} {vs_insert:>10} {r.rate / endpoint.rate:>12.3f}"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 requests per phase")
    parser.add_argument("-n", type=int, default=2000, help="requests per phase")
    parser.add_argument("-c", "--concurrency", type=int, default=8)
    parser.add_argument("--postgres", help="admin URL; a fresh database is created and dropped")
    args = parser.parse_args()
    n = 200 if args.quick else args.n
    logging.disable(logging.WARNING)
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'content.db'}"
        results += await run_lane("sqlite", url, n, args.concurrency)
    if args.postgres:
        name = f"bench_content_{uuid.uuid4().hex[:8]}"
        admin = create_async_engine(args.postgres, isolation_level="AUTOCOMMIT")
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        base = args.postgres.rsplit("/", 1)[0]
        try:
            results += await run_lane("postgres", f"{base}/{name}", n, args.concurrency)
        finally:
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            await admin.dispose()
    endpoint = await bare_endpoint(n, args.concurrency)
    print(f"content interactions: n={n} per phase, concurrency={args.concurrency}")
    report(results, endpoint)
    bench_rows(results, endpoint, n, args.concurrency).emit()


def bench_rows(results: list[Result], endpoint: Result, n: int, concurrency: int) -> BenchRows:
    rows = BenchRows(__file__)
    inserts = {r.name.split()[0]: r for r in results if "bare INSERT" in r.name}
    for r in results:
        if "baseline" in r.name:
            continue
        lane, what = r.name.split(" ", 1)
        insert = inserts.get(lane)
        rows.add(
            lane=lane,
            what=f"{what} via the content API, n={n} x {concurrency} clients (ASGI in process)",
            figure=r.rate,
            unit="req/s",
            baseline="bare FastAPI endpoint, same transport and clients",
            baseline_figure=endpoint.rate,
            p50_ms=r.pct(50),
            p95_ms=r.pct(95),
            p99_ms=r.pct(99),
            note=f"{r.rate / insert.rate:.3f}x a bare INSERT per txn ({insert.rate:.0f}/s)"
            if insert and "write" in what
            else "",
        )
    return rows


if __name__ == "__main__":
    asyncio.run(main())
