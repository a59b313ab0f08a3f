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
3. flash sale through the gateway (skip with ``--no-gateway``): the whole platform as
   processes (``shared.runner.Platform``: Tansu, six services, gateway; free ports, SQLite
   in a temp dir, or on the PostgreSQL lane a fresh database per service). Members
   register and sign in through the gateway (``shared.demo``), join a community, and a
   flash sale opens a few seconds later; then ``--gateway-claims`` claims for
   ``--gateway-stock`` coupons from ``--gateway-concurrency`` workers, each member
   claiming ``--claims-per-member`` times back to back (so the per-member limit is raced
   too). Prints claims/s and p50/p95/p99, checks exactly the stock won and nobody above
   the limit (``--quick``: 200 claims for 20). Baseline in the same run: as many
   ``GET /v1/campaigns/{id}`` (the sale's countdown) by the same members through the
   gateway, same workers.

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
from scratch_databases import fresh_databases
from sqlalchemy import insert, text

from services.campaigns.app import create_app
from services.campaigns.models import CommunityReplica, MembershipReplica
from services.campaigns.settings import CampaignsSettings
from shared.auth import Principal, Role, TokenCodec
from shared.broker import free_port
from shared.demo import Demo
from shared.runner import Platform
from shared.settings import LOCAL_JWT_SECRET, SERVICE_PORTS

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
    async with fresh_databases([f"campaigns_bench_{uuid.uuid4().hex[:8]}"]) as [url]:
        return await run(url)


# --- 3. the flash sale through the gateway, on the platform as processes ----------------------


async def gateway_members(client: httpx.AsyncClient, count: int) -> Demo:
    """``count`` members registered and signed in through the gateway, all fans of
    ``demo.communities[0]``, and known to campaigns (each has entered a free lottery there:
    memberships reach campaigns by event)."""
    demo = Demo(client, seed=7, members=count, active=count, admin=("admin", "admin"),
                concurrency=16)  # fmt: skip
    token = await demo.call("POST", "/v1/auth/token", data={"username": "admin",
                                                            "password": "admin"})  # fmt: skip
    demo.operator = {"Authorization": f"Bearer {token.json()['access_token']}"}
    await demo.register_members()
    await demo.sign_in_active()
    await demo.create_communities()
    community = demo.communities[0]

    async def join(person: dict[str, Any]) -> None:
        await demo.call("POST", f"/v1/communities/{community['id']}/members", json={},
                        headers=demo.tokens[person["id"]], ok=(200, 201, 409))  # fmt: skip

    await demo.each("joins", demo.people, join)
    prize = {"kind": "points", "points": 1}
    lottery = await demo.campaign({"name": "bench readiness", "type": "lottery",
                                   "community_id": community["id"],
                                   "rules": {"winners": 1, "prize": prize}})  # fmt: skip
    known: list[bool] = []

    async def enter(person: dict[str, Any]) -> None:
        known.append(await demo.participate(f"/v1/campaigns/{lottery['id']}/entries", person, {}))

    await demo.each("readiness", demo.people, enter)
    if not all(known):
        raise RuntimeError(f"campaigns never learned of some members: {demo.report.skipped}")
    return demo


async def open_flash_sale(demo: Demo, stock: int, limit: int) -> str:
    """A flash sale that opens a few seconds after launch; returns once it is active."""
    template = await demo.call("POST", "/v1/coupons", headers=demo.operator, json={
        "name": "bench flash sale", "kind": "percent_off", "value": 30, "total_stock": stock,
    })  # fmt: skip
    now = datetime.now(UTC)
    body = {"name": "bench flash sale", "type": "flash_sale", "objective": "sales",
            "community_id": demo.communities[0]["id"],
            "starts_at": (now + timedelta(seconds=3)).isoformat(),
            "ends_at": (now + timedelta(hours=1)).isoformat(),
            "rules": {"stock": stock, "per_member_limit": limit,
                      "coupon_template_id": template.json()["id"]}}  # fmt: skip
    created = await demo.call("POST", "/v1/campaigns", json=body, headers=demo.operator)
    sale_id: str = created.json()["id"]
    await demo.call("POST", f"/v1/campaigns/{sale_id}/launch", headers=demo.operator)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = await demo.call("GET", f"/v1/campaigns/{sale_id}", headers=demo.operator)
        if found.json()["status"] == "active":
            return sale_id
        await asyncio.sleep(0.2)
    raise TimeoutError(f"flash sale {sale_id} never became active")


async def gateway_burst(
    demo: Demo, sale_id: str, args: argparse.Namespace, lane: str, rows: BenchRows
) -> list[str]:
    """Baseline reads, then the claims, same members, same workers; checks the outcome."""
    members = [p["id"] for p in demo.people]
    per = args.claims_per_member
    # Request i belongs to member i // per: a member's claims leave back to back.
    claimer = [members[(i // per) % len(members)] for i in range(args.gateway_claims)]
    http, path = demo.http, f"/v1/campaigns/{sale_id}"
    read_statuses: Counter[int] = Counter()
    claims: list[tuple[str, int]] = []

    async def read(i: int) -> None:
        response = await http.get(path, headers=demo.tokens[claimer[i]])
        read_statuses[response.status_code] += 1

    async def claim(i: int) -> None:
        response = await http.post(f"{path}/entries", headers=demo.tokens[claimer[i]])
        claims.append((claimer[i], response.status_code))

    workers = args.gateway_concurrency
    await run_workers(min(200, args.gateway_claims), workers, read)  # warm-up
    read_statuses.clear()
    seconds, latencies = await run_workers(args.gateway_claims, workers, read)
    base = Result("baseline: GET the sale via gateway", args.gateway_claims, seconds, latencies)
    seconds, latencies = await run_workers(args.gateway_claims, workers, claim)
    ours = Result("flash-sale claims via gateway", args.gateway_claims, seconds, latencies)

    statuses = Counter(status for _, status in claims)
    won = Counter(member for member, status in claims if status == 201)
    over = sum(1 for n in won.values() if n > args.per_member_limit)
    left = (await http.get(path, headers=demo.operator)).json().get("stock_left")
    problems = []
    if statuses[201] != args.gateway_stock:
        problems.append(f"{statuses[201]} claims won for stock {args.gateway_stock}")
    if over:
        problems.append(f"{over} members above the per-member limit {args.per_member_limit}")
    if left != 0:
        problems.append(f"stock_left {left} after the burst")
    if set(statuses) - {201, 409}:
        problems.append(f"unexpected claim statuses {dict(statuses)}")
    if set(read_statuses) != {200}:
        problems.append(f"baseline reads answered {dict(read_statuses)}")
    lines = [base.line(), ours.line(base), f"  ok statuses {dict(statuses)}, stock_left {left}"]
    if problems:
        lines = lines[:2] + [f"  !! {problem}" for problem in problems]
    p50, p95, p99 = percentiles(ours.latencies_ms)
    rows.add(
        lane=lane,
        what=f"flash-sale claims through the gateway (platform as processes): "
        f"{args.gateway_claims} claims by {len(set(claimer))} members x {workers} workers "
        f"for {args.gateway_stock} coupons",
        figure=ours.rate,
        unit="claims/s",
        baseline="GET /v1/campaigns/{id} (the countdown) through the gateway, same members "
        "and workers",
        baseline_figure=base.rate,
        baseline_unit="req/s",
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        target=f"exactly {args.gateway_stock} winners, none above the per-member limit "
        f"{args.per_member_limit}",
        met=not problems,
        note="; ".join(problems) or f"statuses {dict(statuses)}",
    )
    return lines


async def gateway_bench(
    args: argparse.Namespace, rows: BenchRows, database_urls: dict[str, str] | None = None
) -> list[str]:
    """The platform as processes (SQLite, or the given database per service), then the burst."""
    env = {"COMMUNITY_LOG_LEVEL": "WARNING", "GATEWAY_RATE_LIMIT_PER_MIN": "1000000",
           "CAMPAIGNS_LIFECYCLE_INTERVAL_S": "0.2"}  # fmt: skip
    for service, url in (database_urls or {}).items():
        env[f"{service.upper()}_DATABASE_URL"] = url
    lane = "postgresql" if database_urls else "sqlite"
    members = -(-args.gateway_claims // args.claims_per_member)
    with tempfile.TemporaryDirectory() as tmp:
        platform = Platform(Path(tmp), gateway_port=free_port(), free_ports=True, env=env)
        # Ports are free ones here: tell campaigns where rewards and members listen.
        platform.extra_env["CAMPAIGNS_REWARDS_URL"] = platform.url("rewards")
        platform.extra_env["CAMPAIGNS_MEMBERS_URL"] = platform.url("members")
        with platform:
            # Idle connections expire before uvicorn's 5 s keep-alive closes them under us.
            limits = httpx.Limits(
                max_connections=args.gateway_concurrency + 16, keepalive_expiry=2.0
            )
            async with httpx.AsyncClient(
                base_url=platform.gateway_url, timeout=60, limits=limits
            ) as client:
                started = time.perf_counter()
                demo = await gateway_members(client, members)
                sale_id = await open_flash_sale(demo, args.gateway_stock, args.per_member_limit)
                setup = time.perf_counter() - started
                lines = [f"  ({members} members registered, joined and known in {setup:.0f} s)"]
                try:
                    return lines + await gateway_burst(demo, sale_id, args, lane, rows)
                except httpx.HTTPError:  # a dropped connection: show why before the temp dir goes
                    log = platform.logs / "gateway.log"
                    print(f"  !! gateway log tail:\n{log.read_text(errors='replace')[-3000:]}")
                    raise


async def gateway_bench_pg(args: argparse.Namespace, rows: BenchRows) -> list[str]:
    """Each service its own fresh database, as the end-to-end tests do."""
    tag = uuid.uuid4().hex[:8]
    names = [f"campaigns_bench_{service}_{tag}" for service in SERVICE_PORTS]
    async with fresh_databases(names) as urls:
        return await gateway_bench(args, rows, dict(zip(SERVICE_PORTS, urls, strict=True)))


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts, a smoke run")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--checkins", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--claims", type=int, default=200)
    parser.add_argument("--stock", type=int, default=100)
    parser.add_argument(
        "--no-gateway",
        action="store_true",
        help="skip the flash sale through the gateway (platform as processes)",
    )
    parser.add_argument("--gateway-claims", type=int, default=1000)
    parser.add_argument("--gateway-stock", type=int, default=100)
    parser.add_argument("--gateway-concurrency", type=int, default=64)
    parser.add_argument("--claims-per-member", type=int, default=4)
    parser.add_argument("--per-member-limit", type=int, default=1)
    args = parser.parse_args()
    if args.quick:
        args.checkins = 300
        args.gateway_claims, args.gateway_stock = 200, 20
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
    if not args.no_gateway:
        print(f"\nsqlite, through the gateway: {args.gateway_claims} flash-sale claims")
        for line in await gateway_bench(args, rows):
            print(line)
        if not args.no_postgres:
            print(f"\npostgresql, through the gateway: {args.gateway_claims} flash-sale claims")
            for line in await gateway_bench_pg(args, rows):
                print(line)
    rows.emit()


if __name__ == "__main__":
    asyncio.run(main())
