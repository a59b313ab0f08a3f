"""Fan tiers: upgrade the moment points qualify, downgrade only at the review date."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import update

from services.rewards.jobs import scheduled_jobs
from services.rewards.models import Account, LedgerEntry
from shared.auth import Role
from shared.db import utcnow
from shared.scheduler import run_once
from tests.conftest import auth
from tests.rewards.conftest import OPERATOR, Rewards, RewardsFactory, like, record_of

LADDER = [("fan", "Fan", 0), ("core_fan", "Core Fan", 10), ("super_fan", "Super Fan", 30)]


async def ladder(rewards: Rewards) -> None:
    for code, name, threshold in LADDER:
        response = await rewards.client.post(
            "/v1/tiers", json={"code": code, "name": name, "threshold": threshold}, headers=OPERATOR
        )
        assert response.status_code == 201, response.text


async def review(rewards: Rewards) -> int:
    [job] = [j for j in scheduled_jobs(rewards.service) if j.name == "rewards.review_tiers"]
    return await run_once(rewards.runtime.db, job)


async def test_tiers_are_listed_with_their_basis(rewards: Rewards) -> None:
    await ladder(rewards)
    listed = (await rewards.client.get("/v1/tiers", headers=auth(Role.MEMBER))).json()
    assert listed["basis"] == "lifetime"
    assert [t["code"] for t in listed["items"]] == ["fan", "core_fan", "super_fan"]
    duplicate = await rewards.client.post(
        "/v1/tiers", json={"code": "vip", "name": "VIP", "threshold": 10}, headers=OPERATOR
    )
    assert duplicate.status_code == 409


async def test_earning_upgrades_at_once_and_multipliers_follow_the_tier(
    rewards: Rewards,
) -> None:
    await ladder(rewards)
    await rewards.rule("reaction.added", 6, tier_multipliers={"core_fan": 2.0})
    author = str(uuid.uuid4())
    await rewards.deliver(like(author))
    assert (await rewards.account(author))["tier"] == "fan"
    await rewards.deliver(like(author))
    assert (await rewards.account(author))["tier"] == "core_fan"
    await rewards.deliver(like(author))  # paid double as a core fan: 6 + 6 + 12
    account = await rewards.account(author)
    assert account["lifetime"] == 24
    await rewards.deliver(like(author))
    account = await rewards.account(author)
    assert (account["lifetime"], account["tier"]) == (36, "super_fan")
    changes = [e.data for e in await rewards.events("tier.changed")]
    assert [(c["previous_tier"], c["tier"], c["direction"]) for c in changes] == [
        (None, "fan", "upgrade"),
        ("fan", "core_fan", "upgrade"),
        ("core_fan", "super_fan", "upgrade"),
    ]


async def test_a_batch_of_likes_upgrades_once_to_the_tier_its_total_reaches(
    rewards: Rewards,
) -> None:
    await ladder(rewards)
    await rewards.rule("reaction.added", 4)
    author = str(uuid.uuid4())
    batch = [record_of(like(author), offset=n) for n in range(8)]
    await rewards.runtime.consumer.handle_batch(batch)
    account = await rewards.account(author)
    assert (account["lifetime"], account["tier"]) == (32, "super_fan")
    changes = [e.data for e in await rewards.events("tier.changed")]
    assert [(c["previous_tier"], c["tier"]) for c in changes] == [(None, "super_fan")]


async def test_adjustments_do_not_move_tiers(rewards: Rewards) -> None:
    await ladder(rewards)
    member = str(uuid.uuid4())
    await rewards.credit(member, 100)
    account = await rewards.account(member)
    assert (account["tier"], account["lifetime"]) == (None, 0)


async def test_rolling_tiers_downgrade_only_at_the_review_date(
    make_rewards: RewardsFactory,
) -> None:
    rewards = await make_rewards(tier_basis="rolling", tier_rolling_window_days=30)
    await ladder(rewards)
    await rewards.rule("reaction.added", 15)
    author = str(uuid.uuid4())
    await rewards.deliver(like(author))
    assert (await rewards.account(author))["tier"] == "core_fan"
    async with rewards.runtime.db.session() as session:  # the points leave the window
        await session.execute(
            update(LedgerEntry)
            .where(LedgerEntry.member_id == author)
            .values(created_at=utcnow() - timedelta(days=40))
        )
    assert await review(rewards) == 0
    assert (await rewards.account(author))["tier"] == "core_fan"

    async with rewards.runtime.db.session() as session:  # the review date arrives
        await session.execute(
            update(Account)
            .where(Account.member_id == author)
            .values(tier_review_at=utcnow() - timedelta(seconds=1))
        )
    assert await review(rewards) == 1
    assert await review(rewards) == 0
    account = await rewards.account(author)
    assert account["tier"] == "fan"
    last = (await rewards.events("tier.changed"))[-1].data
    assert (last["previous_tier"], last["tier"], last["direction"]) == (
        "core_fan",
        "fan",
        "downgrade",
    )
