"""Lots: oldest-expiring first, expiry and reminders exactly once, pending holds released."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from sqlalchemy import select, update

from services.rewards.jobs import scheduled_jobs
from services.rewards.models import LedgerLine, Lot
from shared.db import Database, utcnow
from shared.scheduler import ScheduledJob, run_once
from tests.rewards.conftest import OPERATOR, Rewards, RewardsFactory, like


def job(rewards: Rewards, name: str) -> ScheduledJob:
    [found] = [j for j in scheduled_jobs(rewards.service) if j.name == f"rewards.{name}"]
    return found


async def lots_of(rewards: Rewards, member: str) -> list[Lot]:
    async with rewards.runtime.db.session() as session:
        stmt = select(Lot).where(Lot.member_id == member).order_by(Lot.created_at, Lot.id)
        return list((await session.scalars(stmt)).all())


async def set_lot(rewards: Rewards, lot_id: str, **values: object) -> None:
    async with rewards.runtime.db.session() as session:
        await session.execute(update(Lot).where(Lot.id == lot_id).values(**values))


async def spend(rewards: Rewards, member: str, amount: int) -> str:
    async with rewards.runtime.db.session() as session:
        posting = await rewards.service.ledger.spend(
            session,
            member_id=member,
            amount=amount,
            reason_code="test",
            reason="test spend",
            source=str(uuid.uuid4()),
        )
    return posting.entry_id


async def test_spending_uses_the_oldest_expiring_lots_first(rewards: Rewards) -> None:
    member = str(uuid.uuid4())
    for _ in range(3):
        await rewards.credit(member, 10)
    late, soon, never = await lots_of(rewards, member)
    now = utcnow()
    await set_lot(rewards, late.id, expires_at=now + timedelta(days=300))
    await set_lot(rewards, soon.id, expires_at=now + timedelta(days=10))
    await set_lot(rewards, never.id, expires_at=None)

    entry_id = await spend(rewards, member, 15)

    remaining = {lot.id: lot.remaining for lot in await lots_of(rewards, member)}
    assert remaining == {soon.id: 0, late.id: 5, never.id: 10}
    async with rewards.runtime.db.session() as session:
        lines = (
            await session.execute(
                select(LedgerLine.lot_id, LedgerLine.amount)
                .where(LedgerLine.entry_id == entry_id, LedgerLine.member_id.is_not(None))
                .order_by(LedgerLine.id)
            )
        ).all()
    assert [tuple(line) for line in lines] == [(soon.id, -10), (late.id, -5)]
    assert (await rewards.audit())["balanced"]


async def test_expired_lots_leave_the_balance_once_even_with_two_replicas(
    rewards: Rewards,
) -> None:
    member = str(uuid.uuid4())
    await rewards.credit(member, 10)
    await rewards.credit(member, 20)
    first, _ = await lots_of(rewards, member)
    await set_lot(rewards, first.id, expires_at=utcnow() - timedelta(minutes=1))
    await spend(rewards, member, 4)  # comes out of the lot about to expire

    expire = job(rewards, "expire_points")
    other_replica = Database(rewards.runtime.db.url)
    try:
        await asyncio.gather(run_once(rewards.runtime.db, expire), run_once(other_replica, expire))
    finally:
        await other_replica.dispose()
    assert await run_once(rewards.runtime.db, expire) == 0

    assert (await rewards.account(member))["available"] == 20
    [expired] = await rewards.events("points.expired")
    assert expired.data["amount"] == 6
    assert expired.data["balance"] == 20
    audit = await rewards.audit()
    assert audit["balanced"], audit
    assert audit["system_accounts"]["expired"] == 6


async def test_a_reminder_goes_out_once_before_points_expire(
    make_rewards: RewardsFactory,
) -> None:
    rewards = await make_rewards(expiry_reminder_days=14)
    member = str(uuid.uuid4())
    await rewards.credit(member, 10)
    await rewards.credit(member, 5)
    soon, later = await lots_of(rewards, member)
    await set_lot(rewards, soon.id, expires_at=utcnow() + timedelta(days=5))
    remind = job(rewards, "remind_expiring")
    assert await run_once(rewards.runtime.db, remind) == 1
    assert await run_once(rewards.runtime.db, remind) == 0
    [reminder] = await rewards.events("points.expiring")
    assert reminder.data["amount"] == 10
    assert later.expires_at is not None


async def test_held_points_stay_pending_until_released(make_rewards: RewardsFactory) -> None:
    rewards = await make_rewards(default_hold_h=48)
    await rewards.rule("reaction.added", 5)
    author = str(uuid.uuid4())
    await rewards.deliver(like(author))
    account = await rewards.account(author)
    assert (account["available"], account["pending"]) == (0, 5)
    item = await rewards.item(5, stock=None)
    assert (await rewards.redeem(author, item["id"])).status_code == 409

    release = job(rewards, "release_pending")
    assert await run_once(rewards.runtime.db, release) == 0
    [lot] = await lots_of(rewards, author)
    await set_lot(rewards, lot.id, available_at=utcnow() - timedelta(seconds=1))
    assert await run_once(rewards.runtime.db, release) == 1
    assert await run_once(rewards.runtime.db, release) == 0

    account = await rewards.account(author)
    assert (account["available"], account["pending"]) == (5, 0)
    assert (await rewards.redeem(author, item["id"])).status_code == 201
    assert (await rewards.audit())["balanced"]


async def test_a_rule_can_hold_its_points_for_its_own_period(rewards: Rewards) -> None:
    await rewards.rule("reaction.added", 5, hold_h=1)
    author = str(uuid.uuid4())
    await rewards.deliver(like(author))
    entries = (await rewards.client.get(f"/v1/accounts/{author}/entries", headers=OPERATOR)).json()[
        "items"
    ]
    assert entries[0]["pending_delta"] == 5
    assert [line["account"] for line in entries[0]["lines"]] == ["pending", "earned"]
