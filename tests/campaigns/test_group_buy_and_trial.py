"""Group buy (forms at its size, coupons for formed groups, failures at settlement) and
product trials (applications with answers, selection within slots, review posts)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from tests.campaigns.conftest import OPERATOR, Harness

GROUP: dict[str, Any] = {"group_size": 3, "coupon_template_id": "tpl-group"}
TRIAL: dict[str, Any] = {
    "slots": 2,
    "questions": ["Why you?", "Which skin type?"],
    "auto_select": "earliest",
    "review_days": 7,
}


async def test_a_group_forms_at_its_size_and_its_members_get_coupons(harness: Harness) -> None:
    campaign = await harness.active("group_buy", GROUP)
    path = f"/v1/campaigns/{campaign['id']}/participants"
    leader, *others = [await harness.member() for _ in range(6)]
    started = await harness.post_as(leader, path)
    assert started.status_code == 201
    group_id = started.json()["group_id"]
    responses = await asyncio.gather(
        *(harness.post_as(m, path, {"group_id": group_id}) for m in others)
    )
    assert Counter(r.status_code for r in responses) == {201: 2, 409: 3}
    assert {r.json()["type"].rsplit("/", 1)[1] for r in responses if r.status_code == 409} == {
        "group-not-open"
    }
    [formed] = await harness.events("groupbuy.formed")
    assert formed.data["group_id"] == group_id
    assert len(formed.data["member_ids"]) == 3
    grants = await harness.events("campaign.reward_granted")
    assert sorted(g.data["member_id"] for g in grants) == sorted(formed.data["member_ids"])
    missing = await harness.post_as(await harness.member(), path, {"group_id": "nope"})
    assert missing.status_code == 404


async def test_open_groups_fail_at_settlement(harness: Harness) -> None:
    campaign = await harness.active("group_buy", GROUP)
    base = f"/v1/campaigns/{campaign['id']}"
    leader, friend = await harness.member(), await harness.member()
    group_id = (await harness.post_as(leader, f"{base}/participants")).json()["group_id"]
    await harness.post_as(friend, f"{base}/participants", {"group_id": group_id})
    await harness.client.post(f"{base}/end", headers=OPERATOR)
    settled = (await harness.client.post(f"{base}/settle", headers=OPERATOR)).json()
    assert settled["grants"] == 0
    [failed] = await harness.events("groupbuy.failed")
    assert sorted(failed.data["member_ids"]) == sorted([leader, friend])


async def test_trial_applications_need_every_answer(harness: Harness) -> None:
    campaign = await harness.active("trial", TRIAL)
    path = f"/v1/campaigns/{campaign['id']}/participants"
    member = await harness.member()
    short = await harness.post_as(member, path, {"answers": ["Me"]})
    assert short.status_code == 422
    assert short.json()["field"] == "answers"
    wrong = await harness.post_as(member, path, {"group_id": "g"})
    assert wrong.json()["field"] == "group_id"
    applied = await harness.post_as(member, path, {"answers": ["Me", "Dry"]})
    assert applied.status_code == 201
    assert applied.json()["answers"] == ["Me", "Dry"]


async def test_selection_fills_the_slots_and_a_review_post_completes(harness: Harness) -> None:
    campaign = await harness.active("trial", TRIAL)
    base = f"/v1/campaigns/{campaign['id']}"
    applicants = []
    for _ in range(4):
        member = await harness.member()
        await harness.post_as(member, f"{base}/participants", {"answers": ["a", "b"]})
        harness.clock.advance(minutes=1)
        applicants.append(member)
    chosen = await harness.client.patch(
        f"{base}/participants/{applicants[3]}", json={"selected": True}, headers=OPERATOR
    )
    assert chosen.status_code == 200
    assert chosen.json()["selected_at"] is not None
    [selected] = await harness.events("trial.selected")
    assert selected.data["member_id"] == applicants[3]

    await harness.post(applicants[3])
    [completed] = await harness.events("campaign.completed")
    assert completed.data["member_id"] == applicants[3]

    await harness.client.post(f"{base}/end", headers=OPERATOR)
    await harness.client.post(f"{base}/settle", headers=OPERATOR)
    picked = [e.data["member_id"] for e in await harness.events("trial.selected")]
    assert picked == [applicants[3], applicants[0]]  # the rule fills the last slot
    full = await harness.client.patch(
        f"{base}/participants/{applicants[1]}", json={"selected": True}, headers=OPERATOR
    )
    assert full.status_code == 409
    assert full.json()["type"].endswith("/no-slots-left")
