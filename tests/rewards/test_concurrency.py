"""Under 200 concurrent requests stock is never oversold and balances never go negative."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

from tests.rewards.conftest import OPERATOR, Rewards, like


async def credit_many(rewards: Rewards, members: list[str], amount: int) -> None:
    async with rewards.runtime.db.session() as session:
        for member in members:
            await rewards.service.ledger.adjust(
                session,
                member_id=member,
                amount=amount,
                reason="test credit",
                operator_id="operator-1",
                source=f"test:{member}",
            )


async def test_200_concurrent_redemptions_of_the_last_item_give_one_success(
    rewards: Rewards,
) -> None:
    members = [str(uuid.uuid4()) for _ in range(200)]
    await credit_many(rewards, members, 50)
    item = await rewards.item(50, stock=1)
    responses = await asyncio.gather(*(rewards.redeem(m, item["id"]) for m in members))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 1, 409: 199}, statuses
    assert {r.json()["type"].rsplit("/", 1)[1] for r in responses if r.status_code == 409} == {
        "item-out-of-stock"
    }
    stock = (await rewards.client.get(f"/v1/catalog/{item['id']}", headers=OPERATOR)).json()
    assert stock["stock"] == 0
    assert len(await rewards.events("points.spent")) == 1
    audit = await rewards.audit()
    assert audit["balanced"], audit
    assert audit["system_accounts"]["spent"] == 50


async def test_200_concurrent_spends_against_a_balance_for_10_give_exactly_10(
    rewards: Rewards,
) -> None:
    member = str(uuid.uuid4())
    await credit_many(rewards, [member], 100)
    item = await rewards.item(10, stock=None)
    responses = await asyncio.gather(*(rewards.redeem(member, item["id"]) for _ in range(200)))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 10, 409: 190}, statuses
    refused = {r.json()["type"].rsplit("/", 1)[1] for r in responses if r.status_code == 409}
    assert refused == {"insufficient-points"}
    assert (await rewards.account(member))["available"] == 0
    audit = await rewards.audit()
    assert audit["balanced"], audit


async def test_concurrent_earning_and_spending_keep_the_ledger_balanced(rewards: Rewards) -> None:
    await rewards.rule("reaction.added", 1)
    member = str(uuid.uuid4())
    await credit_many(rewards, [member], 20)
    item = await rewards.item(1, stock=None)
    spends = [rewards.redeem(member, item["id"]) for _ in range(40)]
    earns = [rewards.deliver(like(member)) for _ in range(40)]
    results = await asyncio.gather(*spends, *earns)
    spent = sum(1 for r in results[:40] if r is not None and r.status_code == 201)
    assert (await rewards.account(member))["available"] == 20 + 40 - spent
    audit = await rewards.audit()
    assert audit["balanced"], audit
