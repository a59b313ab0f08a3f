"""Lottery: committed seed hash, entries, a draw anyone can recompute, prizes at settlement."""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

from shared.auth import Role
from tests.campaigns.conftest import OPERATOR, Harness
from tests.conftest import auth

RULES: dict[str, Any] = {
    "winners": 3,
    "prize": {"kind": "coupon", "coupon_template_id": "tpl-1"},
    "max_entries_per_member": 2,
}


def recompute(seed: str, entry_ids: list[str], count: int) -> list[str]:
    """Written from the published algorithm, independently of the service's code."""
    ranked = sorted(
        entry_ids, key=lambda e: (hashlib.sha256(f"{seed}:{e}".encode()).hexdigest(), e)
    )
    return ranked[:count]


async def test_draw_is_recomputable_from_the_revealed_seed(harness: Harness) -> None:
    campaign = await harness.active("lottery", RULES)
    path = f"/v1/campaigns/{campaign['id']}"
    [launched] = await harness.events("campaign.launched")
    committed = launched.data["seed_hash"]
    assert committed == campaign["seed_hash"]
    assert len(committed) == 64

    entrants = [await harness.member() for _ in range(6)]
    for member in entrants:
        assert (await harness.post_as(member, f"{path}/entries")).status_code == 201
    await harness.post_as(entrants[0], f"{path}/entries")
    extra = await harness.post_as(entrants[0], f"{path}/entries")
    assert extra.status_code == 409
    assert extra.json()["type"].endswith("/entry-limit-reached")

    listed = (await harness.client.get(f"{path}/entries", headers=OPERATOR)).json()["items"]
    assert Counter(e["member_id"] for e in listed)[entrants[0]] == 2
    before = (await harness.client.get(f"{path}/draws", headers=auth(Role.MEMBER))).json()
    assert before["seed"] is None
    assert len(before["entries"]) == 7
    early = await harness.client.post(f"{path}/draws", headers=OPERATOR)
    assert early.status_code == 409

    await harness.client.post(f"{path}/end", headers=OPERATOR)
    drawn = await harness.client.post(f"{path}/draws", headers=OPERATOR)
    assert drawn.status_code == 201, drawn.text
    again = await harness.client.post(f"{path}/draws", headers=OPERATOR)
    assert again.status_code == 409

    published = (await harness.client.get(f"{path}/draws", headers=auth(Role.MEMBER))).json()
    seed = published["seed"]
    assert hashlib.sha256(seed.encode()).hexdigest() == committed
    entry_ids = [e["entry_id"] for e in published["entries"]]
    assert entry_ids == sorted(entry_ids)
    assert published["winner_entry_ids"] == recompute(seed, entry_ids, 3)
    [event] = await harness.events("lottery.draw_published")
    assert event.data["winner_entry_ids"] == published["winner_entry_ids"]

    settled = (await harness.client.post(f"{path}/settle", headers=OPERATOR)).json()
    assert (settled["grants"], settled["coupons"]) == (3, 3)
    owner = {e["entry_id"]: e["member_id"] for e in published["entries"]}
    grants = await harness.events("campaign.reward_granted")
    assert sorted(g.data["member_id"] for g in grants) == sorted(
        owner[e] for e in published["winner_entry_ids"]
    )
    assert {g.data["coupon_template_id"] for g in grants} == {"tpl-1"}


async def test_settling_an_undrawn_lottery_draws_it_within_the_coupon_budget(
    harness: Harness,
) -> None:
    campaign = await harness.active("lottery", RULES, budget_coupons=2)
    path = f"/v1/campaigns/{campaign['id']}"
    for _ in range(4):
        await harness.post_as(await harness.member(), f"{path}/entries")
    await harness.client.post(f"{path}/end", headers=OPERATOR)
    settled = (await harness.client.post(f"{path}/settle", headers=OPERATOR)).json()
    assert settled["coupons"] == 2
    assert settled["campaign"]["spent_coupons"] == 2
    assert len(await harness.events("lottery.draw_published")) == 1
    assert len(await harness.events("campaign.winner_selected")) == 3


async def test_check_ins_are_refused_by_a_lottery(harness: Harness) -> None:
    campaign = await harness.active("lottery", RULES)
    member = await harness.member()
    response = await harness.post_as(member, f"/v1/campaigns/{campaign['id']}/checkins")
    assert response.status_code == 409
    assert response.json()["type"].endswith("/wrong-campaign-type")
