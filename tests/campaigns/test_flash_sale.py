"""Flash sale: stock released at the start, per-member limit, no overselling under a burst."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

from tests.campaigns.conftest import OPERATOR, START, Harness

RULES: dict[str, Any] = {"stock": 20, "per_member_limit": 2, "coupon_template_id": "tpl-flash"}
BURST: dict[str, Any] = {**RULES, "stock": 100}


async def test_2000_concurrent_claims_never_oversell_or_pass_the_member_limit(
    harness: Harness,
) -> None:
    """The issue's burst: 2,000 claims at once by 500 members (4 each) for 100 coupons."""
    campaign = await harness.active("flash_sale", BURST)
    path = f"/v1/campaigns/{campaign['id']}/entries"
    members = [await harness.member() for _ in range(500)]
    claims = [members[i % 500] for i in range(2000)]
    responses = await asyncio.gather(*(harness.post_as(m, path) for m in claims))
    statuses = Counter(r.status_code for r in responses)
    assert statuses[201] == 100, statuses
    assert set(statuses) <= {201, 409}
    reasons = {r.json()["type"].rsplit("/", 1)[1] for r in responses if r.status_code == 409}
    assert reasons <= {"sold-out", "claim-limit-reached"}
    winners = Counter(r.json()["member_id"] for r in responses if r.status_code == 201)
    assert max(winners.values()) <= 2
    grants = await harness.events("campaign.reward_granted")
    assert len(grants) == 100
    assert {g.data["coupon_template_id"] for g in grants} == {"tpl-flash"}
    read = (await harness.client.get(f"/v1/campaigns/{campaign['id']}", headers=OPERATOR)).json()
    assert (read["stock_left"], read["spent_coupons"]) == (0, 100)
    assert read["seconds_remaining"] > 0


async def test_claims_open_at_the_start_and_say_why_when_refused(harness: Harness) -> None:
    harness.clock.now = START - timedelta(minutes=5)
    campaign = await harness.create("flash_sale", {**RULES, "stock": 1, "per_member_limit": 1})
    path = f"/v1/campaigns/{campaign['id']}"
    await harness.client.post(f"{path}/launch", headers=OPERATOR)
    first, second = await harness.member(), await harness.member()
    early = await harness.post_as(first, f"{path}/entries")
    assert early.status_code == 409
    assert early.json()["type"].endswith("/campaign-not-open")
    harness.clock.now = START
    await harness.tick()
    assert (await harness.post_as(first, f"{path}/entries")).status_code == 201
    gone = await harness.post_as(second, f"{path}/entries")
    assert gone.status_code == 409
    assert gone.json()["type"].endswith("/sold-out")
