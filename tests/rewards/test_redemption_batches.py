"""Group commit of redemptions: one transaction for many requests, an outcome for each."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, insert, select
from starlette.responses import Response

from services.rewards.errors import InsufficientPoints, ItemNotFound, ItemOutOfStock
from services.rewards.group_commit import AGAIN, Again, GroupCommit
from services.rewards.models import Redemption
from services.rewards.redemptions import ALONE, RedemptionRequest
from shared.auth import Role
from shared.db import idempotency_table
from shared.idempotency import REPLAY_HEADER
from tests.conftest import auth
from tests.rewards.conftest import OPERATOR, Rewards


def request_for(
    member: str, item_id: str, *, key: str | None = None, quantity: int = 1
) -> RedemptionRequest:
    return RedemptionRequest(
        owner=member,
        key=key or str(uuid.uuid4()),
        fingerprint=f"{item_id}:{quantity}",
        member_id=member,
        item_id=item_id,
        quantity=quantity,
    )


async def stored_keys(rewards: Rewards) -> set[str]:
    async with rewards.runtime.db.session() as session:
        return set((await session.execute(select(idempotency_table.c.scope))).scalars())


async def test_a_mixed_batch_commits_the_good_spends_and_refuses_the_others(
    rewards: Rewards,
) -> None:
    rich, poor, nobody = (str(uuid.uuid4()) for _ in range(3))
    await rewards.credit(rich, 100)
    await rewards.credit(poor, 5)
    mug = await rewards.item(10, stock=None)
    last = await rewards.item(10, stock=1)
    batch = [
        request_for(rich, mug["id"]),
        request_for(poor, mug["id"]),  # 5 points for a 10-point mug
        request_for(rich, str(uuid.uuid4())),  # no such item
        request_for(rich, last["id"]),  # takes the last one
        request_for(nobody, mug["id"]),  # no account at all
        request_for(rich, last["id"]),  # none left
        request_for(rich, mug["id"], quantity=3),
    ]
    outcomes = await rewards.desk.redeem_together(batch)

    assert [type(o).__name__ for o in outcomes] == [
        "Response",
        "InsufficientPoints",
        "ItemNotFound",
        "Response",
        "InsufficientPoints",
        "ItemOutOfStock",
        "Response",
    ]
    short, unknown, gone = outcomes[1], outcomes[2], outcomes[5]
    assert isinstance(short, InsufficientPoints)
    assert short.extra["balance"] == {"available": 5}
    assert isinstance(unknown, ItemNotFound)
    assert isinstance(gone, ItemOutOfStock)
    assert gone.extra["stock"] == 0
    assert (await rewards.account(rich))["available"] == 100 - 10 - 10 - 30
    assert (await rewards.account(poor))["available"] == 5
    assert len(await rewards.events("points.spent")) == 3
    spent = sorted((e.data["balance"] for e in await rewards.events("points.spent")), reverse=True)
    assert spent == [90, 80, 50]  # each event carries the balance right after its own spend
    assert len(await rewards.events("reward.redeemed")) == 3
    # Only the successes keep their keys; a refused request may be retried with its key.
    assert await stored_keys(rewards) == {batch[i].scope for i in (0, 3, 6)}
    audit = await rewards.audit()
    assert audit["balanced"], audit


async def test_a_batch_spends_the_oldest_expiring_lots_first_across_its_spends(
    rewards: Rewards,
) -> None:
    member = str(uuid.uuid4())
    await rewards.credit(member, 3)  # these lots expire first
    await rewards.credit(member, 3)
    await rewards.credit(member, 10)
    item = await rewards.item(2, stock=None)
    outcomes = await rewards.desk.redeem_together(
        [request_for(member, item["id"]) for _ in range(4)]
    )
    assert all(isinstance(o, Response) for o in outcomes)
    entries = (await rewards.client.get(f"/v1/accounts/{member}/entries", headers=OPERATOR)).json()[
        "items"
    ]
    credits = sorted((e for e in entries if e["amount"] > 0), key=lambda e: e["created_at"])
    lots_by_entry: dict[str, int] = {}
    for entry in entries:
        if entry["amount"] < 0:
            for line in entry["lines"]:
                if line["lot_id"]:
                    lots_by_entry[line["lot_id"]] = (
                        lots_by_entry.get(line["lot_id"], 0) - line["amount"]
                    )
    first_lots = [line["lot_id"] for c in credits[:2] for line in c["lines"] if line["lot_id"]]
    assert {lot: lots_by_entry.get(lot, 0) for lot in first_lots} == dict.fromkeys(first_lots, 3)
    assert sum(lots_by_entry.values()) == 8
    assert (await rewards.account(member))["available"] == 8
    assert (await rewards.audit())["balanced"]


async def test_a_second_request_with_a_key_in_the_batch_waits_for_the_next_one(
    rewards: Rewards,
) -> None:
    member = str(uuid.uuid4())
    await rewards.credit(member, 100)
    item = await rewards.item(10, stock=None)
    first = request_for(member, item["id"], key="order-7")
    outcomes = await rewards.desk.redeem_together([first, first])
    assert isinstance(outcomes[0], Response)
    assert outcomes[0].status_code == 201
    assert outcomes[1] is AGAIN
    # In the next batch the key is taken: the same body replays the stored answer.
    [again] = await rewards.desk.redeem_together([first])
    assert isinstance(again, Response)
    assert again.headers[REPLAY_HEADER] == "true"
    assert again.body == outcomes[0].body
    other_body = RedemptionRequest(**{**first.__dict__, "fingerprint": "another body"})
    [refused] = await rewards.desk.redeem_together([other_body])
    assert isinstance(refused, Exception)
    assert getattr(refused, "status", None) == 422
    assert (await rewards.account(member))["available"] == 90


async def test_concurrent_duplicates_of_one_key_spend_once_and_replay_the_answer(
    rewards: Rewards,
) -> None:
    member = str(uuid.uuid4())
    await rewards.credit(member, 100)
    item = await rewards.item(10, stock=None)
    responses = await asyncio.gather(
        *(rewards.redeem(member, item["id"], key="same-key") for _ in range(6))
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum(r.headers.get(REPLAY_HEADER) == "true" for r in responses) == 5
    assert (await rewards.account(member))["available"] == 90
    assert len(await rewards.events("points.spent")) == 1


async def test_the_same_key_with_another_body_is_a_422(rewards: Rewards) -> None:
    member = str(uuid.uuid4())
    await rewards.credit(member, 100)
    item = await rewards.item(10, stock=None)
    assert (await rewards.redeem(member, item["id"], key="k-1")).status_code == 201
    other = await rewards.redeem(member, item["id"], key="k-1", quantity=2)
    assert other.status_code == 422
    assert (await rewards.account(member))["available"] == 90


async def test_a_batch_whose_transaction_fails_sends_each_request_alone(rewards: Rewards) -> None:
    members = [str(uuid.uuid4()) for _ in range(4)]
    for member in members:
        await rewards.credit(member, 50)
    item = await rewards.item(10, stock=None)
    batch = [request_for(m, item["id"]) for m in members]
    # A redemption already holds the third request's source: its insert fails the batch.
    async with rewards.runtime.db.session() as session:
        await session.execute(
            insert(Redemption).values(
                id=str(uuid.uuid4()),
                member_id=members[2],
                item_id=item["id"],
                item_kind="physical",
                quantity=1,
                points=0,
                source=batch[2].source,
                created_at=datetime.now(UTC),
            )
        )
    outcomes = await rewards.desk.redeem_together(batch)
    assert outcomes == [ALONE] * 4
    # Nothing of the failed batch stayed: no spend, no claim, no event.
    assert [(await rewards.account(m))["available"] for m in members] == [50] * 4
    assert await stored_keys(rewards) == set()
    assert await rewards.events("points.spent") == []

    # Through the API the same requests go alone: three succeed, the clash alone fails.
    statuses = []
    for request in batch:
        statuses.append(
            (
                await rewards.client.post(
                    "/v1/redemptions",
                    json={"item_id": item["id"]},
                    headers={
                        **auth(Role.MEMBER, request.member_id),
                        "Idempotency-Key": request.key,
                    },
                )
            ).status_code
        )
    assert statuses == [201, 201, 409, 201]
    assert [(await rewards.account(m))["available"] for m in members] == [40, 40, 50, 40]
    assert (await rewards.audit())["balanced"]


async def test_many_concurrent_redemptions_through_the_api_all_land_once(
    rewards: Rewards,
) -> None:
    members = [str(uuid.uuid4()) for _ in range(20)]
    for member in members:
        await rewards.credit(member, 30)
    item = await rewards.item(10, stock=25)
    responses = await asyncio.gather(
        *(rewards.redeem(m, item["id"]) for m in members for _ in range(2))
    )
    assert Counter(r.status_code for r in responses) == {201: 25, 409: 15}
    async with rewards.runtime.db.session() as session:
        count = await session.scalar(select(func.count()).select_from(Redemption))
    assert count == 25
    stock = (await rewards.client.get(f"/v1/catalog/{item['id']}", headers=OPERATOR)).json()
    assert stock["stock"] == 0
    assert len(await rewards.events("reward.redeemed")) == 25
    assert (await rewards.audit())["balanced"]


# -- the batcher on its own ------------------------------------------------------------


async def test_group_commit_gathers_what_waits_and_answers_each_in_order() -> None:
    seen: list[list[int]] = []

    async def run(batch: Sequence[int]) -> list[int | Again]:
        seen.append(list(batch))
        await asyncio.sleep(0.01)
        return [AGAIN if n == 3 and len(seen) == 1 else n * 10 for n in batch]

    batcher: GroupCommit[int, int] = GroupCommit(run, max_batch=4)
    results = await asyncio.gather(*(batcher.submit(n) for n in range(6)))
    assert results == [0, 10, 20, 30, 40, 50]
    assert seen[0] == [0, 1, 2, 3]
    assert seen[1] == [3, 4, 5]  # the deferred one goes first in the next batch


async def test_group_commit_fails_every_request_of_a_failed_batch() -> None:
    async def run(batch: Sequence[int]) -> list[int | Again]:
        raise RuntimeError("boom")

    batcher: GroupCommit[int, int] = GroupCommit(run, max_batch=10)
    results = await asyncio.gather(*(batcher.submit(n) for n in range(3)), return_exceptions=True)
    assert [str(r) for r in results] == ["boom"] * 3
    with pytest.raises(ValueError, match="at least one"):
        GroupCommit(run, max_batch=0)
