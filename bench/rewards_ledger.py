"""Rewards ledger benchmark: spends/s via the API and earned events/s via the consumer.

Per database backend (SQLite in a temp dir; PostgreSQL at 127.0.0.1:5432 unless
``--no-postgres``, in a fresh database created and dropped here):

1. spends via the API: ``POST /v1/redemptions`` (Idempotency-Key, item price 1, unlimited stock)
   from ``--concurrency`` workers spread over ``--members`` members, through the real app
   (group commit of concurrent redemptions: idempotency keys, locked balances, lots,
   double-entry lines, outbox, one transaction per batch) called in this process through
   ``clients.AsgiClient``: no uvicorn, no sockets, and none of httpx's own per-request
   CPU (about as much as the route's), which used to be measured as the API's.
   Latency per request: p50/p95/p99.
   Baseline in the same run: the smallest useful spend in raw SQL on the same engine (one
   transaction: conditional UPDATE of the balance + one INSERT), same workers and members.
   Ceiling in the same run: ``GET /healthz`` through the same app and client, no database
   work: what this process can serve at all, so what no spend route can beat.
2. the same spends against the service as deployed: ``community serve rewards`` in its own
   process (uvicorn, the outbox relay publishing to a local broker) over keep-alive sockets
   (``clients.LeanClient``), at ``--concurrency`` workers and at twice that, with the
   service process's CPU per spend. Ceiling: ``GET /healthz`` to that process.
3. earned events via the consumer: ``reaction.added`` records (one rule pays 5 points) through
   ``EventConsumer.handle_batch`` in batches of 500, the path the Kafka loop calls, minus the
   broker. Baseline: the same records through a consumer whose handler does nothing, so the
   inbox insert and envelope parsing alone.

    .venv/bin/python bench/rewards_ledger.py            # full
    .venv/bin/python bench/rewards_ledger.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka.structs import ConsumerRecord
from clients import AsgiClient, LeanClient
from report import BenchRows, Result, percentiles, run_workers
from scratch_databases import fresh_databases
from sqlalchemy import text

from services.rewards.app import create_app
from services.rewards.schemas import CouponKind, CouponTemplateCreate
from services.rewards.service import RewardsService
from services.rewards.settings import RewardsSettings
from shared.auth import Principal, Role, TokenCodec
from shared.broker import LocalBroker, free_port, terminate
from shared.consumer import ConsumedEvent, EventConsumer
from shared.db import Database
from shared.events.contracts.content import ReactionAdded
from shared.events.envelope import CloudEvent
from shared.events.registry import spec_of
from shared.settings import LOCAL_JWT_SECRET


def tokens(members: list[str]) -> dict[str, str]:
    codec = TokenCodec(LOCAL_JWT_SECRET)
    return {m: f"Bearer {codec.issue(Principal(subject=m, role=Role.MEMBER))}" for m in members}


async def seed_balances(rewards: RewardsService, db: Database, members: list[str]) -> None:
    async with db.session() as session:
        for member in members:
            await rewards.ledger.adjust(
                session,
                member_id=member,
                amount=1_000_000,
                reason="bench seed",
                operator_id="bench",
                source=f"seed:{member}",
            )


async def bench_spends(url: str, args: argparse.Namespace) -> tuple[Result, Result, Result]:
    settings = RewardsSettings.model_validate({"database_url": url, "log_json": False})
    app = create_app(settings, run_background=False)
    rewards: RewardsService = app.state.rewards
    members = [str(uuid.uuid4()) for _ in range(args.members)]
    auth = tokens(members)
    operator = TokenCodec(LOCAL_JWT_SECRET).issue(Principal(subject="op", role=Role.OPERATOR))
    async with app.router.lifespan_context(app):
        runtime = app.state.runtime
        await seed_balances(rewards, runtime.db, members)
        client = AsgiClient(app)
        item = await client.request(
            "POST",
            "/v1/catalog",
            json={"name": "Sticker", "kind": "digital", "points_price": 1},
            headers={"Authorization": f"Bearer {operator}"},
        )
        spend = Spender(client, auth, item.json()["id"], "k")
        seconds, latencies = await timed_spends(spend, args, args.concurrency)
        audit = await client.request(
            "GET", "/v1/accounts/audit", headers={"Authorization": f"Bearer {operator}"}
        )
        if not audit.json()["balanced"]:
            print("  !! audit does not balance")

        ours = Result("spends via API (redemptions)", args.spends, seconds, latencies)

        # The stack's ceiling: the same app, client and workers, a route with no database
        # work at all. No spend can go faster than this in this process.
        async def health(_: int) -> None:
            await client.request("GET", "/healthz")

        seconds, latencies = await run_workers(args.spends, args.concurrency, health)
        ceiling = Result("ceiling: GET /healthz, same stack", args.spends, seconds, latencies)

        # Baseline: the bare minimum a spend needs, on the same engine.
        db = runtime.db

        async def raw_spend(i: int) -> None:
            member = members[i % len(members)]
            async with db.session() as session:
                moved = await session.execute(
                    text(
                        "UPDATE accounts SET available = available - 1 "
                        "WHERE member_id = :m AND available >= 1"
                    ),
                    {"m": member},
                )
                assert moved.rowcount == 1  # type: ignore[attr-defined]
                await session.execute(
                    text(
                        "INSERT INTO ledger_entries (id, member_id, kind, reason_code, reason, "
                        "amount, available_delta, pending_delta, source, occurred_at, created_at) "
                        "VALUES (:id, :m, 'spend', 'bench', 'bench', -1, -1, 0, :id, :t, :t)"
                    ),
                    {"id": str(uuid.uuid4()), "m": member, "t": datetime.now(UTC)},
                )

        seconds, latencies = await run_workers(args.spends, args.concurrency, raw_spend)
        base = Result("baseline: raw UPDATE+INSERT", args.spends, seconds, latencies)
    return ours, base, ceiling


class Spender:
    """One redemption per call, member ``i`` mod the members and key ``prefix + i``."""

    def __init__(
        self, client: AsgiClient | LeanClient, auth: dict[str, str], item_id: str, prefix: str
    ) -> None:
        self.client, self.auth, self.item_id, self.prefix = client, auth, item_id, prefix
        self.members = list(auth)
        self.failures = 0

    async def __call__(self, i: int) -> None:
        member = self.members[i % len(self.members)]
        response = await self.client.request(
            "POST",
            "/v1/redemptions",
            json={"item_id": self.item_id},
            headers={"Authorization": self.auth[member], "Idempotency-Key": f"{self.prefix}{i}"},
        )
        if response.status_code != 201:
            self.failures += 1


async def timed_spends(
    spend: Spender, args: argparse.Namespace, concurrency: int
) -> tuple[float, list[float]]:
    """A warm-up, then ``args.spends`` timed spends; the seconds and latencies of those."""

    async def warm_up(i: int) -> None:
        await spend(args.spends + i)  # keys after the timed run's: no timed spend is a replay

    await run_workers(min(200, args.spends), concurrency, warm_up)
    timed = await run_workers(args.spends, concurrency, spend)
    if spend.failures:
        print(f"  !! {spend.failures} spends failed")
    return timed


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def rewards_process(url: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A local broker and ``community serve rewards`` on ``url``; the process and its port."""
    with tempfile.TemporaryDirectory() as tmp:
        broker = LocalBroker(log_path=Path(tmp) / "broker.log")
        broker.start()
        port = free_port()
        env = {
            **os.environ,
            "COMMUNITY_DATA_DIR": tmp,
            "COMMUNITY_LOG_LEVEL": "WARNING",
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "REWARDS_DATABASE_URL": url,
            "REWARDS_HOST": "127.0.0.1",
            "REWARDS_PORT": str(port),
        }
        with open(Path(tmp) / "rewards.log", "wb") as log:
            server = subprocess.Popen(
                [sys.executable, "-m", "shared.cli", "serve", "rewards"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            yield server, port
        finally:
            terminate(server)
            broker.stop()


async def bench_served(
    url: str, args: argparse.Namespace
) -> tuple[list[tuple[int, Result, float]], Result]:
    """Spends against the service as deployed: its own process (``community serve
    rewards``: uvicorn, the outbox relay publishing to a local broker, the consumer), over
    keep-alive sockets from this process, at ``--concurrency`` workers and at twice that
    (a process's group commit gathers more under more load). Answers, per worker count,
    the spends and the service's CPU ms a spend; and the same process's ``GET /healthz``
    over the same client (its ceiling)."""
    members = [str(uuid.uuid4()) for _ in range(args.members)]
    auth = tokens(members)
    operator = {
        "Authorization": "Bearer "
        + TokenCodec(LOCAL_JWT_SECRET).issue(Principal(subject="op", role=Role.OPERATOR))
    }
    runs: list[tuple[int, Result, float]] = []
    with rewards_process(url) as (server, port):
        client = LeanClient(f"http://127.0.0.1:{port}")
        try:
            await wait_ready(client, server)
            for member in members:
                seeded = await client.request(
                    "POST",
                    f"/v1/accounts/{member}/adjustments",
                    json={"amount": 1_000_000, "reason": "bench seed"},
                    headers=operator,
                )
                assert seeded.status_code == 201, seeded.body
            item = await client.request(
                "POST",
                "/v1/catalog",
                json={"name": "Sticker", "kind": "digital", "points_price": 1},
                headers=operator,
            )
            for concurrency in (args.concurrency, 2 * args.concurrency):
                spend = Spender(client, auth, item.json()["id"], f"k{concurrency}-")
                cpu_before = process_cpu_s(server.pid)
                seconds, latencies = await timed_spends(spend, args, concurrency)
                cpu_ms = (process_cpu_s(server.pid) - cpu_before) * 1000 / args.spends
                name = f"spends, service as a process, {concurrency} workers"
                runs.append((concurrency, Result(name, args.spends, seconds, latencies), cpu_ms))

            async def health(_: int) -> None:
                await client.request("GET", "/healthz")

            ceiling = Result(
                "ceiling: GET /healthz, same process",
                args.spends,
                *await run_workers(args.spends, args.concurrency, health),
            )
        finally:
            client.close()
    return runs, ceiling


async def wait_ready(client: LeanClient, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"rewards exited with {server.returncode}")
        with contextlib.suppress(OSError):
            if (await client.request("GET", "/readyz")).status_code == 200:
                return
        await asyncio.sleep(0.1)
    raise TimeoutError("rewards not ready after 60 s")


def reaction_record(author: str, offset: int) -> ConsumerRecord[bytes, bytes]:
    data = ReactionAdded(
        post_id=str(uuid.uuid4()),
        community_id="c-1",
        member_id=str(uuid.uuid4()),
        kind="like",
        post_author_id=author,
        reacted_at=datetime.now(UTC),
    )
    spec = spec_of(data)
    value = CloudEvent(
        source="/services/content",
        type=spec.name,
        subject=author,
        data=data.model_dump(mode="json"),
    ).to_json()
    return ConsumerRecord(
        topic=spec.topic.name,
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=author.encode(),
        value=value,
        checksum=None,
        serialized_key_size=len(author),
        serialized_value_size=len(value),
        headers=[],
    )


async def bench_consumer(url: str, args: argparse.Namespace) -> tuple[Result, Result]:
    settings = RewardsSettings.model_validate({"database_url": url, "log_json": False})
    app = create_app(settings, run_background=False)
    operator = TokenCodec(LOCAL_JWT_SECRET).issue(Principal(subject="op", role=Role.OPERATOR))
    authors = [str(uuid.uuid4()) for _ in range(args.members)]
    async with app.router.lifespan_context(app):
        runtime = app.state.runtime
        await AsgiClient(app).request(
            "POST",
            "/v1/earning-rules",
            json={"name": "likes", "event_type": "reaction.added", "points": 5},
            headers={"Authorization": f"Bearer {operator}"},
        )

        async def through(consumer: EventConsumer, name: str) -> Result:
            records = [reaction_record(authors[i % len(authors)], i) for i in range(args.events)]
            started = time.perf_counter()
            for i in range(0, len(records), 500):
                await consumer.handle_batch(records[i : i + 500])
            return Result(name, len(records), time.perf_counter() - started, [])

        ours = await through(runtime.consumer, "earned events via consumer")

        async def nothing(_session: Any, _event: ConsumedEvent) -> None:
            return None

        bare = EventConsumer(
            runtime.db, settings, {"reaction.added": nothing}, group="bench-baseline"
        )
        base = await through(bare, "baseline: inbox only, no-op handler")
        async with runtime.db.session() as session:
            earned = await session.scalar(text("SELECT count(*) FROM ledger_entries"))
        if earned != args.events:
            print(f"  !! expected {args.events} entries, found {earned}")
    return ours, base


async def bench_codes(url: str, args: argparse.Namespace) -> Result:
    """100k coupon codes in one request's worth of work: generate + bulk insert."""
    settings = RewardsSettings.model_validate({"database_url": url, "log_json": False})
    app = create_app(settings, run_background=False)
    rewards: RewardsService = app.state.rewards
    async with app.router.lifespan_context(app):
        db = app.state.runtime.db
        async with db.session() as session:
            template = await rewards.coupons.create_template(
                session, CouponTemplateCreate(name="bench", kind=CouponKind.FREE_SHIPPING)
            )
        started = time.perf_counter()
        async with db.session() as session:
            codes = await rewards.coupons.generate(session, template.id, args.codes)
        seconds = time.perf_counter() - started
    return Result(f"coupon codes generated (1 x {len(codes)})", len(codes), seconds, [])


async def with_pg_database(run: Callable[[str], Awaitable[None]]) -> None:
    async with fresh_databases([f"rewards_bench_{uuid.uuid4().hex[:8]}"]) as [url]:
        await run(url)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts, a smoke run")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--spends", type=int, default=3000)
    parser.add_argument("--events", type=int, default=10000)
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--codes", type=int, default=100_000)
    args = parser.parse_args()
    if args.quick:
        args.spends, args.events, args.codes = 300, 1000, 10_000
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("shared").setLevel(logging.WARNING)

    rows = BenchRows(__file__)

    async def one_backend(label: str) -> None:
        print(f"\n{label}: {args.spends} spends x {args.concurrency} workers, {args.events} events")

        async def spends(url: str) -> None:
            ours, base, ceiling = await bench_spends(url, args)
            print(base.line())
            print(ceiling.line(base))
            print(ours.line(base))

            def row(result: Result, what: str, unit: str, **verdict: Any) -> None:
                p50, p95, p99 = percentiles(result.latencies_ms)
                rows.add(
                    lane=label,
                    what=what,
                    figure=result.rate,
                    unit=unit,
                    baseline="raw UPDATE balance + INSERT entry per spend, same workers",
                    baseline_figure=base.rate,
                    p50_ms=p50,
                    p95_ms=p95,
                    p99_ms=p99,
                    **verdict,
                )

            p99 = percentiles(ours.latencies_ms)[2]
            row(
                ours,
                f"spends via POST /v1/redemptions, {args.spends} x {args.concurrency} "
                f"workers over {args.members} members (ASGI in process)",
                "spends/s",
                target=">= 1,000 spends/s, p99 < 50 ms (PostgreSQL)",
                met=ours.rate >= 1000 and p99 < 50 if label == "postgresql" else None,
            )
            row(
                ceiling,
                f"ceiling of the stack: GET /healthz (no database), {args.spends} x "
                f"{args.concurrency} workers, same app and client",
                "req/s",
            )

        async def served(url: str) -> None:
            runs, ceiling = await bench_served(url, args)
            print(ceiling.line())
            for concurrency, result, cpu_ms in runs:
                print(result.line(ceiling) + f"   (service CPU {cpu_ms:.2f} ms a spend)")
                p50, p95, p99 = percentiles(result.latencies_ms)
                rows.add(
                    lane=label,
                    what=f"spends via POST /v1/redemptions to `community serve rewards` as its "
                    f"own process (uvicorn, relay to a local broker), {args.spends} x "
                    f"{concurrency} workers over keep-alive sockets",
                    figure=result.rate,
                    unit="spends/s",
                    baseline="GET /healthz (no database) to the same process, same client, "
                    f"{args.concurrency} workers",
                    baseline_figure=ceiling.rate,
                    p50_ms=p50,
                    p95_ms=p95,
                    p99_ms=p99,
                    target=">= 1,000 spends/s, p99 < 50 ms (PostgreSQL)",
                    met=result.rate >= 1000 and p99 < 50 if label == "postgresql" else None,
                    note=f"service CPU {cpu_ms:.2f} ms a spend",
                )

        async def events(url: str) -> None:
            ours, base = await bench_consumer(url, args)
            print(base.line())
            print(ours.line(base))
            rows.add(
                lane=label,
                what=f"earned points from {args.events} reaction.added via the consumer, "
                "batches of 500",
                figure=ours.rate,
                unit="events/s",
                baseline="same records, no-op handler (inbox and parsing only)",
                baseline_figure=base.rate,
                target=">= 2,000 earned events/s",
                met=ours.rate >= 2000,
            )

        async def codes(url: str) -> None:
            result = await bench_codes(url, args)
            print(result.line())
            rows.add(
                lane=label,
                what=f"coupon codes generated and inserted in one transaction ({result.count:,})",
                figure=result.rate,
                unit="codes/s",
                baseline="none in this bench",
            )

        for part in (spends, served, events, codes):
            if label == "postgresql":
                await with_pg_database(part)
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    await part(f"sqlite+aiosqlite:///{Path(tmp) / 'rewards.db'}")

    await one_backend("sqlite")
    if not args.no_postgres:
        await one_backend("postgresql")
    rows.emit()


if __name__ == "__main__":
    asyncio.run(main())
