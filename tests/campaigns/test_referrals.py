"""Referral: pending until activation, per-referrer cap, activation window, clawback."""

from __future__ import annotations

import uuid
from typing import Any

from shared.events.contracts import members
from tests.campaigns.conftest import OPERATOR, Harness

RULES: dict[str, Any] = {
    "activation_window_days": 7,
    "reward": {"kind": "points", "points": 50},
    "per_referrer_cap": 2,
    "hold_days": 30,
}


async def refer(harness: Harness, referrer: str) -> str:
    invitee = str(uuid.uuid4())
    await harness.event(
        members.MemberReferred(
            member_id=invitee, referrer_id=referrer, referred_at=harness.clock.now
        ),
        invitee,
    )
    return invitee


async def activate(harness: Harness, invitee: str, referrer: str) -> None:
    await harness.event(
        members.MemberReferralActivated(
            member_id=invitee,
            referrer_id=referrer,
            activated_by="post.published",
            activated_at=harness.clock.now,
        ),
        invitee,
    )


async def test_referrer_is_paid_per_activated_invitee_up_to_the_cap(harness: Harness) -> None:
    campaign = await harness.active("referral", RULES)
    referrer = await harness.member()
    join = await harness.post_as(referrer, f"/v1/campaigns/{campaign['id']}/participants")
    assert join.status_code == 201
    invitees = [await refer(harness, referrer) for _ in range(3)]
    assert await harness.events("campaign.reward_granted") == []  # pending until activation

    for invitee in invitees:
        await activate(harness, invitee, referrer)
    await activate(harness, invitees[0], referrer)  # a repeated activation pays nothing more
    grants = await harness.events("campaign.reward_granted")
    assert [g.data["member_id"] for g in grants] == [referrer, referrer]
    assert len({g.data["grant_id"] for g in grants}) == 2
    board = (
        await harness.client.get(f"/v1/campaigns/{campaign['id']}/leaderboard", headers=OPERATOR)
    ).json()
    assert (board["items"][0]["member_id"], board["items"][0]["score"]) == (referrer, 2)


async def test_activation_after_the_window_pays_nothing(harness: Harness) -> None:
    campaign = await harness.active("referral", RULES)
    referrer = await harness.member()
    await harness.post_as(referrer, f"/v1/campaigns/{campaign['id']}/participants")
    invitee = await refer(harness, referrer)
    harness.clock.advance(days=8)
    await activate(harness, invitee, referrer)
    assert await harness.events("campaign.reward_granted") == []


async def test_invites_of_non_participants_are_not_counted(harness: Harness) -> None:
    await harness.active("referral", RULES)
    referrer = await harness.member()
    invitee = await refer(harness, referrer)
    await activate(harness, invitee, referrer)
    assert await harness.events("campaign.reward_granted") == []


async def test_invitee_erased_within_the_hold_claws_the_reward_back(harness: Harness) -> None:
    campaign = await harness.active("referral", RULES)
    referrer = await harness.member()
    await harness.post_as(referrer, f"/v1/campaigns/{campaign['id']}/participants")
    kept, erased = await refer(harness, referrer), await refer(harness, referrer)
    await activate(harness, kept, referrer)
    await activate(harness, erased, referrer)
    harness.clock.advance(days=3)
    erasure = members.MemberErased(member_id=erased, erased_at=harness.clock.now)
    await harness.event(erasure, erased)
    await harness.event(erasure, erased)  # another event id, same erasure: revoked once

    [revoked] = await harness.events("campaign.reward_revoked")
    grants = {g.data["grant_id"]: g.data for g in await harness.events("campaign.reward_granted")}
    assert revoked.data["grant_id"] in grants
    assert revoked.data["points"] == 50
    assert revoked.data["member_id"] == referrer
    ledger = (
        await harness.client.get(f"/v1/campaigns/{campaign['id']}/grants", headers=OPERATOR)
    ).json()["items"]
    assert sorted(g["revoked_at"] is None for g in ledger) == [False, True]

    harness.clock.advance(days=40)
    late = members.MemberErased(member_id=kept, erased_at=harness.clock.now)
    await harness.event(late, kept)
    assert len(await harness.events("campaign.reward_revoked")) == 1


async def test_referral_rewards_stop_at_the_points_budget(harness: Harness) -> None:
    campaign = await harness.active("referral", {**RULES, "per_referrer_cap": 10}, budget_points=60)
    referrer = await harness.member()
    await harness.post_as(referrer, f"/v1/campaigns/{campaign['id']}/participants")
    for _ in range(2):
        await activate(harness, await refer(harness, referrer), referrer)
    assert len(await harness.events("campaign.reward_granted")) == 1
    read = (await harness.client.get(f"/v1/campaigns/{campaign['id']}", headers=OPERATOR)).json()
    assert read["spent_points"] == 50
