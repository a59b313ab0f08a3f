"""Webhook delivery benchmark: bare httpx POSTs against record -> Dispatcher -> signed POST.

One run, one local receiver (uvicorn on 127.0.0.1, answers 200 at once):

1. baseline: N POSTs of a realistic CloudEvent body with a plain ``httpx.AsyncClient``,
   ``--endpoints`` requests in flight (one per endpoint, as the dispatcher sends);
   requests/s and per-request latency.
2. ours, on SQLite in a temp dir (plus PostgreSQL with ``--postgres URL``):
   - throughput: N events recorded as the consumer records them (one delivery row per
     endpoint, 50 events per transaction), then the dispatcher sends them all; deliveries/s
     from the first commit to the last arrival at the receiver.
   - latency: events recorded one per transaction at ``--rate`` events/s; latency = arrival
     at the receiver - the recording transaction's commit (the consumer's commit).
   The dispatcher is the service's own (``run_forever``: leases, signing, attempt log, the
   SSRF-checking transport), polling every ``--poll`` seconds.

    .venv/bin/python bench/webhooks_delivery.py
    .venv/bin/python bench/webhooks_delivery.py --quick
    .venv/bin/python bench/webhooks_delivery.py --postgres postgresql+asyncpg://postgres@127.0.0.1:5432/webhooks_bench
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from report import BenchRows
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.webhooks.dispatcher import Dispatcher
from services.webhooks.models import WebhookEndpoint
from services.webhooks.service import webhook_service
from services.webhooks.settings import WebhooksSettings
from services.webhooks.signing import new_secret
from shared.broker import free_port
from shared.db import Database, utcnow
from shared.events.envelope import CloudEvent
from shared.migrations import upgrade

MIGRATIONS = Path(__file__).resolve().parents[1] / "services" / "webhooks" / "migrations"


class Receiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.arrived: dict[str, float] = {}
        self.count = 0
        self.done = asyncio.Event()
        self.expect = 0

    async def handle(self, request: Request) -> Response:
        await request.body()
        self.count += 1
        msg_id = request.headers.get("webhook-id")
        if msg_id is not None:
            self.arrived.setdefault(msg_id, time.perf_counter())
        if self.expect and self.count >= self.expect:
            self.done.set()
        return Response("ok")

    def reset(self, expect: int) -> None:
        self.arrived.clear()
        self.count = 0
        self.expect = expect
        self.done = asyncio.Event()


def sample_event(i: int) -> CloudEvent:
    return CloudEvent(
        source="/services/members",
        type="member.registered",
        subject=str(uuid.uuid4()),
        data={
            "member_id": str(uuid.uuid4()),
            "nickname": f"coffee fan {i}",
            "channel": "app",
            "region": "east",
            "city": "Hangzhou",
            "interests": ["espresso", "latte art"],
            "registered_at": utcnow().isoformat(),
        },
    )


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
    q = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": q[49], "p95": q[94], "p99": q[98]}


async def run_baseline(receiver: Receiver, n: int, concurrency: int) -> dict[str, Any]:
    body = sample_event(0).to_json()
    url = f"http://127.0.0.1:{receiver.port}/baseline"
    latencies: list[float] = []
    receiver.reset(0)
    async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as client:
        queue = list(range(n))

        async def worker() -> None:
            while queue:
                queue.pop()
                start = time.perf_counter()
                response = await client.post(url, content=body)
                response.raise_for_status()
                latencies.append((time.perf_counter() - start) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"per_s": n / elapsed, **percentiles(latencies)}


async def prepare(url: str | None, tmp: Path) -> str:
    if url is None:
        return f"sqlite+aiosqlite:///{tmp / 'webhooks.db'}"
    parsed = make_url(url)
    admin = create_async_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
        await conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
    await admin.dispose()
    return url


async def run_ours(
    receiver: Receiver, database_url: str, args: argparse.Namespace, n: int, m: int
) -> dict[str, Any]:
    settings = WebhooksSettings.model_validate(
        {
            "database_url": database_url,
            "allow_private_targets": True,
            "dispatch_poll_interval_s": args.poll,
            "log_json": False,
        }
    )
    db = Database(database_url)
    await upgrade(db, MIGRATIONS)
    now = utcnow()
    async with db.session() as session:
        for e in range(args.endpoints):
            session.add(
                WebhookEndpoint(
                    id=str(uuid.uuid4()),
                    owner="bench",
                    owner_role="operator",
                    url=f"http://127.0.0.1:{receiver.port}/ours/{e}",
                    description="",
                    event_types=["member.*"],
                    enabled=True,
                    secret=new_secret(),
                    created_at=now,
                    updated_at=now,
                )
            )
    dispatcher = Dispatcher(db, settings)
    loop = asyncio.create_task(dispatcher.run_forever())
    result: dict[str, Any] = {"backend": make_url(database_url).get_backend_name()}
    try:
        # Throughput: everything recorded first, then drained.
        receiver.reset(n * args.endpoints)
        started = time.perf_counter()
        for offset in range(0, n, 50):
            async with db.session() as session:
                for i in range(offset, min(n, offset + 50)):
                    await webhook_service.record_event(session, sample_event(i))
        await asyncio.wait_for(receiver.done.wait(), args.timeout)
        elapsed = time.perf_counter() - started
        result["deliveries_per_s"] = n * args.endpoints / elapsed
        # Latency: one event per transaction at a steady rate.
        receiver.reset(m * args.endpoints)
        committed: dict[str, float] = {}
        interval = 1.0 / args.rate
        next_at = began = time.perf_counter()
        for i in range(m):
            event = sample_event(i)
            async with db.session() as session:
                await webhook_service.record_event(session, event)
            committed[event.id] = time.perf_counter()
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        result["achieved_rate"] = m / (time.perf_counter() - began)
        await asyncio.wait_for(receiver.done.wait(), args.timeout)
        latencies = [
            (receiver.arrived[eid] - at) * 1000
            for eid, at in committed.items()
            if eid in receiver.arrived
        ]
        result.update(percentiles(latencies))
        result["latency_events"] = len(latencies)
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        await dispatcher.close()
        await db.dispose()
    return result


async def main(args: argparse.Namespace) -> None:
    n = 200 if args.quick else args.events
    m = 100 if args.quick else args.latency_events
    receiver = Receiver()
    app = Starlette(routes=[Route("/{path:path}", receiver.handle, methods=["POST"])])
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=receiver.port, log_level="warning", lifespan="off"
        )
    )
    serving = asyncio.create_task(server.serve())
    for _ in range(1000):  # up to 10 s for uvicorn to listen
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        baseline = await run_baseline(receiver, n * args.endpoints, args.endpoints)
        results = []
        with tempfile.TemporaryDirectory() as tmp:
            for url in [None, *([args.postgres] if args.postgres else [])]:
                database_url = await prepare(url, Path(tmp))
                results.append(await run_ours(receiver, database_url, args, n, m))
    finally:
        server.should_exit = True
        await serving
    print(f"\nwebhook delivery to a local receiver, {args.endpoints} endpoints")
    print(
        f"  baseline bare httpx POST: {baseline['per_s']:8.0f} req/s   "
        f"p50 {baseline['p50']:.1f} ms  p95 {baseline['p95']:.1f} ms  p99 {baseline['p99']:.1f} ms"
    )
    for r in results:
        ratio = r["deliveries_per_s"] / baseline["per_s"]
        print(
            f"  ours ({r['backend']:10}):       {r['deliveries_per_s']:8.0f} deliveries/s "
            f"({ratio:.2f}x baseline)"
        )
        print(
            f"    commit -> arrival at {args.rate:g} events/s (achieved "
            f"{r['achieved_rate']:.0f}/s; {r['latency_events']} events x "
            f"{args.endpoints} endpoints): p50 {r['p50']:.0f} ms  p95 {r['p95']:.0f} ms  "
            f"p99 {r['p99']:.0f} ms  (target p95 < 1000 ms)"
        )
    rows = BenchRows(__file__)
    for r in results:
        rows.add(
            lane=r["backend"],
            what=f"deliveries, record -> Dispatcher -> signed POST, {n} events x "
            f"{args.endpoints} endpoints; latency commit -> arrival at {args.rate:g} ev/s",
            figure=r["deliveries_per_s"],
            unit="deliveries/s",
            baseline=f"bare httpx POST, {args.endpoints} in flight",
            baseline_figure=baseline["per_s"],
            baseline_unit="req/s",
            p50_ms=r["p50"],
            p95_ms=r["p95"],
            p99_ms=r["p99"],
            target=f"p95 < 1 s at {args.rate:g} events/s",
            # The target is at the offered rate; a loaded machine that cannot offer it says nothing.
            met=r["p95"] < 1000 if r["achieved_rate"] >= 0.9 * args.rate else None,
            note=f"latency phase achieved {r['achieved_rate']:.0f} of {args.rate:g} ev/s, "
            f"{r['latency_events']}/{m} events timed",
        )
    rows.emit()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a small run (a few seconds)")
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--latency-events", type=int, default=1000)
    parser.add_argument("--endpoints", type=int, default=4)
    parser.add_argument("--rate", type=float, default=200.0, help="events/s in the latency phase")
    parser.add_argument("--poll", type=float, default=0.1, help="dispatcher poll interval, s")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--postgres", default=None, help="also run on this PostgreSQL URL")
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(parser.parse_args()))
