"""Group buy (forms at its size, coupons for formed groups, failures at settlement) and
product trials (applications with answers, selection within slots, review posts)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from shared.auth import Role
from tests.campaigns.conftest import OPERATOR, Harness
from tests.conftest import auth

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


# --- bad input: clear problems, nothing written ---------------------------------------------


async def test_a_member_is_in_one_group_and_refused_joins_write_nothing(harness: Harness) -> None:
    campaign = await harness.active("group_buy", GROUP)
    other = await harness.active("group_buy", GROUP)
    path = f"/v1/campaigns/{campaign['id']}/participants"
    leader, second_leader, friend = [await harness.member() for _ in range(3)]
    group_a = (await harness.post_as(leader, path)).json()["group_id"]
    group_b = (await harness.post_as(second_leader, path)).json()["group_id"]
    switch = await harness.post_as(leader, path, {"group_id": group_b})
    assert switch.status_code == 409
    assert switch.json()["type"].endswith("/already-joined")
    foreign = (await harness.post_as(friend, f"/v1/campaigns/{other['id']}/participants")).json()
    elsewhere = await harness.post_as(friend, path, {"group_id": foreign["group_id"]})
    assert elsewhere.status_code == 404
    assert elsewhere.json()["type"].endswith("/group-not-found")
    answers = await harness.post_as(friend, path, {"answers": ["x"]})
    assert answers.status_code == 422
    # None of the refusals joined the friend, nor grew group B.
    assert (await harness.post_as(friend, path, {"group_id": group_b})).status_code == 201
    third = await harness.member()
    assert (await harness.post_as(third, path, {"group_id": group_b})).status_code == 201
    [formed] = await harness.events("groupbuy.formed")
    assert formed.data["group_id"] == group_b
    assert sorted(formed.data["member_ids"]) == sorted([second_leader, friend, third])
    assert group_a != group_b


async def test_formed_groups_keep_their_coupons_within_the_coupon_budget(
    harness: Harness,
) -> None:
    campaign = await harness.active("group_buy", {**GROUP, "group_size": 2}, budget_coupons=3)
    base = f"/v1/campaigns/{campaign['id']}"
    members = [await harness.member() for _ in range(5)]
    first = (await harness.post_as(members[0], f"{base}/participants")).json()["group_id"]
    await harness.post_as(members[1], f"{base}/participants", {"group_id": first})
    second = (await harness.post_as(members[2], f"{base}/participants")).json()["group_id"]
    await harness.post_as(members[3], f"{base}/participants", {"group_id": second})
    lonely = (await harness.post_as(members[4], f"{base}/participants")).json()["group_id"]
    await harness.client.post(f"{base}/end", headers=OPERATOR)
    late = await harness.post_as(
        await harness.member(), f"{base}/participants", {"group_id": lonely}
    )
    assert late.status_code == 409
    assert late.json()["type"].endswith("/campaign-not-open")
    settled = (await harness.client.post(f"{base}/settle", headers=OPERATOR)).json()
    assert (settled["coupons"], settled["campaign"]["spent_coupons"]) == (3, 3)
    assert len(await harness.events("groupbuy.formed")) == 2
    [failed] = await harness.events("groupbuy.failed")
    assert failed.data["group_id"] == lonely


async def test_a_refused_application_writes_nothing_and_applying_twice_is_409(
    harness: Harness,
) -> None:
    campaign = await harness.active("trial", TRIAL)
    path = f"/v1/campaigns/{campaign['id']}/participants"
    member = await harness.member()
    assert (await harness.post_as(member, path, {"answers": ["a", "b", "c"]})).status_code == 422
    assert (await harness.post_as(member, path, {"answers": ["a", "b"]})).status_code == 201
    twice = await harness.post_as(member, path, {"answers": ["x", "y"]})
    assert twice.status_code == 409
    assert twice.json()["type"].endswith("/already-joined")
    [row] = (await harness.client.get(path, headers=OPERATOR)).json()["items"]
    assert row["answers"] == ["a", "b"]
    assert len(await harness.events("campaign.joined")) == 1


async def test_selection_needs_an_applicant_a_running_trial_and_an_operator(
    harness: Harness,
) -> None:
    draft = await harness.create("trial", TRIAL)
    campaign = await harness.active("trial", TRIAL)
    base = f"/v1/campaigns/{campaign['id']}/participants"
    member = await harness.member()
    await harness.post_as(member, base, {"answers": ["a", "b"]})
    select = {"selected": True}
    unknown = await harness.client.patch(f"{base}/nobody", json=select, headers=OPERATOR)
    assert unknown.status_code == 404
    assert unknown.json()["type"].endswith("/participant-not-found")
    not_running = await harness.client.patch(
        f"/v1/campaigns/{draft['id']}/participants/{member}", json=select, headers=OPERATOR
    )
    assert not_running.status_code == 409
    assert not_running.json()["type"].endswith("/invalid-transition")
    by_member = await harness.post_as(member, base)  # members cannot PATCH; POST is a re-apply
    assert by_member.status_code == 409
    forbidden = await harness.client.patch(
        f"{base}/{member}", json=select, headers=auth(Role.MEMBER, member)
    )
    assert forbidden.status_code == 403
    group = await harness.active("group_buy", GROUP)
    wrong = await harness.client.patch(
        f"/v1/campaigns/{group['id']}/participants/{member}", json=select, headers=OPERATOR
    )
    assert wrong.status_code == 409
    assert wrong.json()["type"].endswith("/wrong-campaign-type")
    for _ in range(2):
        chosen = await harness.client.patch(f"{base}/{member}", json=select, headers=OPERATOR)
        assert chosen.status_code == 200
    assert len(await harness.events("trial.selected")) == 1, "selecting twice selects once"
    assert await harness.events("campaign.completed") == [], "selection alone completes nothing"


async def test_only_reviews_after_selection_are_paid_at_settlement(harness: Harness) -> None:
    rules = {**TRIAL, "auto_select": "none", "review_reward": {"kind": "points", "points": 30}}
    campaign = await harness.active("trial", rules, budget_points=50)
    base = f"/v1/campaigns/{campaign['id']}"
    early_poster, reviewer, silent = [await harness.member() for _ in range(3)]
    for member in (early_poster, reviewer, silent):
        await harness.post_as(member, f"{base}/participants", {"answers": ["a", "b"]})
    await harness.post(early_poster)  # before selection: not a review
    harness.clock.advance(minutes=1)
    for member in (early_poster, reviewer):
        await harness.client.patch(
            f"{base}/participants/{member}", json={"selected": True}, headers=OPERATOR
        )
    harness.clock.advance(minutes=1)
    await harness.post(reviewer)
    await harness.client.post(f"{base}/end", headers=OPERATOR)
    settled = (await harness.client.post(f"{base}/settle", headers=OPERATOR)).json()
    assert (settled["grants"], settled["points"]) == (1, 30)
    [grant] = await harness.events("campaign.reward_granted")
    assert (grant.data["member_id"], grant.data["reason"]) == (reviewer, "trial-review")
