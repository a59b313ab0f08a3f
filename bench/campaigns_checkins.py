"""Campaigns benchmark: check-ins/s via the API against a raw INSERT, and a flash-sale burst.

Per database backend (SQLite in a temp dir; PostgreSQL at 127.0.0.1:5432 unless
``--no-postgres``, in a fresh database created and dropped here):

1. check-ins via the API: ``POST /v1/campaigns/{id}/checkins`` from ``--concurrency``
   workers, one per member (each member checks in once), through the real app
   (TransactionalRoute, eligibility from the community replica, participant row lock,
   streak recount, outbox) on an in-process ASGI client: no uvicorn, no sockets.
   Baseline in the same run: a raw ``INSERT INTO checkins`` per check-in, one transaction
   each, same workers, same engine.
2. flash sale: ``--claims`` claims fired at once (``asyncio.gather``) by as many members
   for ``--stock`` coupons; prints claims/s, p50/p95/p99, and checks exactly ``--stock``
   winners and no member above the per-member limit.

    .venv/bin/python bench/campaigns_checkins.py            # full
    .venv/bin/python bench/campaigns_checkins.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from report import BenchRows, Result, percentiles, run_workers
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import create_async_engine

from services.campaigns.app import create_app
from services.campaigns.models import CommunityReplica, MembershipReplica
from services.campaigns.settings import CampaignsSettings
from shared.auth import Principal, Role, TokenCodec
from shared.settings import LOCAL_JWT_SECRET

PG_ADMIN = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
COMMUNITY = "bench-community"


def bearer(subject: str, role: Role) -> dict[str, str]:
    token = TokenCodec(LOCAL_JWT_SECRET).issue(Principal(subject=subject, role=role))
    return {"Authorization": f"Bearer {token}"}


async def seed_members(app: Any, members: list[str]) -> None:
    async with app.state.runtime.db.session() as session:
        await session.execute(insert(CommunityReplica).values(id=COMMUNITY, timezone="UTC"))
        await session.execute(
            insert(MembershipReplica),
            [{"community_id": COMMUNITY, "member_id": m, "role": "member"} for m in members],
        )


async def campaign(client: httpx.AsyncClient, type_: str, rules: dict[str, Any]) -> str:
    now = datetime.now(UTC)
    ops = bearer("bench-ops", Role.OPERATOR)
    body = {
        "name": f"bench {type_}",
        "type": type_,
        "objective": "engagement",
        "community_id": COMMUNITY,
        "starts_at": (now - timedelta(minutes=1)).isoformat(),
        "ends_at": (now + timedelta(days=1)).isoformat(),
        "rules": rules,
    }
    created = (await client.post("/v1/campaigns", json=body, headers=ops)).json()
    launched = await client.post(f"/v1/campaigns/{created['id']}/launch", headers=ops)
    assert launched.json()["status"] == "active", launched.text
    campaign_id: str = created["id"]
    return campaign_id


async def bench(url: str, args: argparse.Namespace, rows: BenchRows) -> list[str]:
    settings = CampaignsSettings.model_validate({"database_url": url, "log_json": False})
    app = create_app(settings, run_background=False)
    members = [str(uuid.uuid4()) for _ in range(max(args.checkins, args.claims) + 200)]
    headers = {m: bearer(m, Role.MEMBER) for m in members}
    lines: list[str] = []
    async with app.router.lifespan_context(app):
        await seed_members(app, members)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            checkin_id = await campaign(client, "checkin", {"days_required": 21})
            failures = 0

            async def check_in(i: int) -> None:
                nonlocal failures
                response = await client.post(
                    f"/v1/campaigns/{checkin_id}/checkins", headers=headers[members[i]]
                )
                if response.status_code != 201:
                    failures += 1

            # Warm-up on members the measured run does not use.
            warm = len(members) - 200
            await run_workers(200, args.concurrency, lambda i: check_in(warm + i))
            seconds, latencies = await run_workers(args.checkins, args.concurrency, check_in)
            if failures:
                lines.append(f"  !! {failures} check-ins failed")
            ours = Result("check-ins via API", args.checkins, seconds, latencies)

            db = app.state.runtime.db
            today = date.today()

            async def raw_insert(i: int) -> None:
                async with db.session() as session:
                    await session.execute(
                        text(
                            "INSERT INTO checkins (campaign_id, member_id, day, makeup, "
                            "created_at) VALUES (:c, :m, :d, false, :t)"
                        ),
                        {"c": "baseline", "m": members[i], "d": today, "t": datetime.now(UTC)},
                    )

            seconds, latencies = await run_workers(args.checkins, args.concurrency, raw_insert)
            base = Result("baseline: raw INSERT per check-in", args.checkins, seconds, latencies)
            lines += [base.line(), ours.line(base)]
            p50, p95, p99 = percentiles(ours.latencies_ms)
            rows.add(
                lane=url,
                what=f"check-ins via POST /v1/campaigns/{{id}}/checkins, {args.checkins} "
                f"x {args.concurrency} workers (ASGI in process)",
                figure=ours.rate,
                unit="req/s",
                baseline="raw INSERT INTO checkins, 1 txn each, same workers",
                baseline_figure=base.rate,
                p50_ms=p50,
                p95_ms=p95,
                p99_ms=p99,
                note=f"{failures} check-ins failed" if failures else "",
            )

            sale_id = await campaign(
                client,
                "flash_sale",
                {"stock": args.stock, "per_member_limit": 1, "coupon_template_id": "bench"},
            )
            claimers = members[: args.claims]
            claim_latencies: list[float] = []

            async def claim(member: str) -> httpx.Response:
                started = time.perf_counter()
                response = await client.post(
                    f"/v1/campaigns/{sale_id}/entries", headers=headers[member]
                )
                claim_latencies.append((time.perf_counter() - started) * 1000)
                return response

            started = time.perf_counter()
            responses = await asyncio.gather(*(claim(m) for m in claimers))
            seconds = time.perf_counter() - started
            statuses = Counter(r.status_code for r in responses)
            per_member = Counter(r.json()["member_id"] for r in responses if r.status_code == 201)
            burst = Result(
                f"flash sale: {args.claims} claims at once", args.claims, seconds, claim_latencies
            )
            lines.append(burst.line())
            exact = statuses[201] == args.stock and max(per_member.values()) == 1
            verdict = "ok" if exact else "!!"
            lines.append(f"  {verdict} statuses {dict(statuses)} for stock {args.stock}")
            p50, p95, p99 = percentiles(claim_latencies)
            rows.add(
                lane=url,
                what=f"flash sale: {args.claims} claims at once for {args.stock} coupons",
                figure=burst.rate,
                unit="claims/s",
                baseline="none in this bench",
                p50_ms=p50,
                p95_ms=p95,
                p99_ms=p99,
                target=f"exactly {args.stock} winners, none above the per-member limit",
                met=exact,
                note=f"statuses {dict(statuses)}",
            )
    return lines


async def with_pg_database(run: Callable[[str], Awaitable[list[str]]]) -> list[str]:
    name = f"campaigns_bench_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        return await run(f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}")
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts, a smoke run")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--checkins", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--claims", type=int, default=200)
    parser.add_argument("--stock", type=int, default=100)
    args = parser.parse_args()
    if args.quick:
        args.checkins = 300
    logging.basicConfig(level=logging.WARNING)

    rows = BenchRows(__file__)

    async def run(url: str) -> list[str]:
        return await bench(url, args, rows)

    print(f"\nsqlite: {args.checkins} check-ins x {args.concurrency} workers")
    with tempfile.TemporaryDirectory() as tmp:
        for line in await run(f"sqlite+aiosqlite:///{Path(tmp) / 'campaigns.db'}"):
            print(line)
    if not args.no_postgres:
        print(f"\npostgresql: {args.checkins} check-ins x {args.concurrency} workers")
        for line in await with_pg_database(run):
            print(line)
    rows.emit()


if __name__ == "__main__":
    asyncio.run(main())
