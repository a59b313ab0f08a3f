"""Lottery: committed seed hash, entries, a draw anyone can recompute, prizes at settlement."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.campaigns.rewards_client import RewardsClient
from services.campaigns.types.lottery import winners_of
from services.rewards.app import create_app as create_rewards_app
from services.rewards.settings import RewardsSettings
from shared.auth import Role
from shared.scheduler import run_once
from tests.campaigns.conftest import OPERATOR, START, Clock, Harness, start_campaigns
from tests.conftest import Databases, auth, running

RULES: dict[str, Any] = {
    "winners": 3,
    "prize": {"kind": "coupon", "coupon_template_id": "tpl-1"},
    "max_entries_per_member": 2,
}


def recompute(seed: str, entries: list[dict[str, Any]], count: int) -> list[str]:
    """Written from the published algorithm, independently of the service's code: ticket i
    of an entry is sha256(f"{seed}:{entry_id}:{i}"); entries rank by their lowest ticket."""

    def lowest(entry: dict[str, Any]) -> tuple[str, str]:
        tickets = [
            hashlib.sha256(f"{seed}:{entry['entry_id']}:{i}".encode()).hexdigest()
            for i in range(entry["tickets"])
        ]
        return min(tickets), entry["entry_id"]

    return [e["entry_id"] for e in sorted(entries, key=lowest)][:count]


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
    assert {e["tickets"] for e in published["entries"]} == {1}
    assert published["winner_entry_ids"] == recompute(seed, published["entries"], 3)
    [event] = await harness.events("lottery.draw_published")
    assert event.data["winner_entry_ids"] == published["winner_entry_ids"]
    assert event.data["entry_tickets"] == [1] * 7

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


async def test_a_free_lottery_sells_no_tickets(harness: Harness) -> None:
    campaign = await harness.active("lottery", RULES)
    member = await harness.member()
    path = f"/v1/campaigns/{campaign['id']}/entries"
    response = await harness.post_as(member, path, {"tickets": 2})
    assert response.status_code == 422
    assert response.json()["type"].endswith("/invalid-application")
    listed = await harness.client.get(path, headers=OPERATOR)
    assert listed.json()["items"] == []


def test_more_tickets_win_more_often_and_the_draw_is_a_pure_function() -> None:
    entries = [("heavy", 9), ("light", 1)]
    wins = Counter(winners_of(f"seed-{i}", entries, 1)[0] for i in range(400))
    # Deterministic seeds: the 9-in-10 entry wins about 90% of draws, not about half.
    assert 330 <= wins["heavy"] <= 390
    assert winners_of("s", entries, 2) == winners_of("s", list(reversed(entries)), 2)
    assert sorted(winners_of("s", entries, 5)) == ["heavy", "light"]


# --- entries earned by check-ins --------------------------------------------------------------


async def test_check_ins_of_the_linked_challenge_become_tickets(harness: Harness) -> None:
    challenge = await harness.active("checkin", {"days_required": 21})
    rules = {**RULES, "entry": "checkins", "checkin_campaign_id": challenge["id"],
             "max_tickets_per_entry": 5, "max_entries_per_member": 3}  # fmt: skip
    lottery = await harness.active("lottery", rules)
    member, idle = await harness.member(), await harness.member()
    entries = f"/v1/campaigns/{lottery['id']}/entries"
    for _ in range(2):
        response = await harness.post_as(member, f"/v1/campaigns/{challenge['id']}/checkins")
        assert response.status_code == 201, response.text
        harness.clock.advance(days=1)

    first = await harness.post_as(member, entries)
    assert first.status_code == 201, first.text
    assert (first.json()["tickets"], first.json()["source"]) == (2, "checkins")
    spent = await harness.post_as(member, entries)
    assert spent.status_code == 409
    assert spent.json()["type"].endswith("/no-tickets-earned")
    none = await harness.post_as(idle, entries)
    assert none.status_code == 409
    assert none.json()["type"].endswith("/no-tickets-earned")

    await harness.post_as(member, f"/v1/campaigns/{challenge['id']}/checkins")
    second = await harness.post_as(member, entries)
    assert second.json()["tickets"] == 1
    board = await harness.client.get(f"/v1/campaigns/{lottery['id']}/leaderboard", headers=OPERATOR)
    assert [(r["member_id"], r["score"]) for r in board.json()["items"]] == [(member, 3.0)]
    submitted = await harness.events("campaign.entry_submitted")
    assert [e.data["tickets"] for e in submitted] == [2, 1]


async def test_a_check_in_lottery_must_link_a_check_in_challenge(harness: Harness) -> None:
    other = await harness.create("lottery", RULES)
    body = {
        "name": "bad link", "type": "lottery", "objective": "engagement",
        "community_id": harness.community_id,
        "starts_at": START.isoformat(), "ends_at": (START + timedelta(days=1)).isoformat(),
        "rules": {**RULES, "entry": "checkins", "checkin_campaign_id": other["id"]},
    }  # fmt: skip
    response = await harness.client.post("/v1/campaigns", json=body, headers=OPERATOR)
    assert response.status_code == 422
    assert response.json()["type"].endswith("/invalid-campaign")
    unlinked = {**body, "rules": {**RULES, "entry": "checkins"}}
    assert (
        await harness.client.post("/v1/campaigns", json=unlinked, headers=OPERATOR)
    ).status_code == 422
    assert len(await harness.events("campaign.created")) == 1


# --- entries bought with points (a real rewards service in process) ---------------------------

PAID: dict[str, Any] = {
    **RULES,
    "entry": "points",
    "points_per_ticket": 30,
    "max_tickets_per_entry": 3,
    "max_entries_per_member": 2,
}


class LosingTransport(httpx.AsyncBaseTransport):
    """Delivers the request to rewards, then loses the answer: the worst case of a timeout."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self.inner.handle_async_request(request)
        raise httpx.ReadTimeout("answer lost", request=request)


class Paid:
    def __init__(self, harness: Harness, rewards: httpx.AsyncClient, app: FastAPI) -> None:
        self.harness = harness
        self.rewards = rewards
        self.rewards_app = app

    async def credit(self, member_id: str, amount: int) -> None:
        response = await self.rewards.post(
            f"/v1/accounts/{member_id}/adjustments",
            json={"amount": amount, "reason": "starting balance"},
            headers=OPERATOR,
        )
        assert response.status_code == 201, response.text

    async def balance(self, member_id: str) -> int:
        account = await self.rewards.get(f"/v1/accounts/{member_id}", headers=OPERATOR)
        available: int = account.json()["available"]
        return available

    def client(self, transport: httpx.AsyncBaseTransport | None = None) -> RewardsClient:
        tokens = self.rewards_app.state.runtime.tokens
        if transport is None:
            return RewardsClient(tokens, base_url="http://rewards", client=self.rewards)
        http = httpx.AsyncClient(transport=transport, base_url="http://rewards")
        return RewardsClient(tokens, base_url="http://rewards", client=http)


@pytest.fixture
async def paid(databases: Databases) -> AsyncIterator[Paid]:
    settings = RewardsSettings.model_validate(
        {"database_url": await databases.new("rewards"), "log_json": False}
    )
    rewards_app = create_rewards_app(settings, run_background=False)
    async with running(rewards_app) as rewards:
        clock = Clock(START + timedelta(minutes=1))
        tokens = rewards_app.state.runtime.tokens
        client = RewardsClient(tokens, base_url="http://rewards", client=rewards)
        app, context = await start_campaigns(
            await databases.new("campaigns"), clock, rewards_client=client
        )
        async with context as campaigns:
            harness = Harness(campaigns, app, clock)
            await harness.community()
            yield Paid(harness, rewards, rewards_app)


async def test_tickets_bought_with_points_spend_once_and_weigh_in_the_draw(paid: Paid) -> None:
    h = paid.harness
    campaign = await h.active("lottery", PAID)
    path = f"/v1/campaigns/{campaign['id']}"
    rich, poor = await h.member(), await h.member()
    await paid.credit(rich, 100)
    await paid.credit(poor, 20)

    key = {"Idempotency-Key": "buy-3"}
    bought = await h.client.post(
        f"{path}/entries", json={"tickets": 3}, headers=auth(Role.MEMBER, rich) | key
    )
    assert bought.status_code == 201, bought.text
    assert (bought.json()["tickets"], bought.json()["points_spent"]) == (3, 90)
    assert bought.json()["status"] == "confirmed"
    replay = await h.client.post(
        f"{path}/entries", json={"tickets": 3}, headers=auth(Role.MEMBER, rich) | key
    )
    assert replay.json()["id"] == bought.json()["id"]
    assert await paid.balance(rich) == 10

    too_many = await h.post_as(rich, f"{path}/entries", {"tickets": 4})
    assert too_many.status_code == 422
    short = await h.post_as(rich, f"{path}/entries", {"tickets": 1})
    assert short.status_code == 409
    assert short.json()["type"].endswith("/insufficient-points")
    assert short.json()["required"] == 30
    poor_try = await h.post_as(poor, f"{path}/entries", {"tickets": 1})
    assert poor_try.status_code == 409
    assert await paid.balance(poor) == 20

    listed = (await h.client.get(f"{path}/entries", headers=OPERATOR)).json()["items"]
    assert [(e["member_id"], e["tickets"]) for e in listed] == [(rich, 3)]
    assert len(await h.events("campaign.entry_submitted")) == 1

    await h.client.post(f"{path}/end", headers=OPERATOR)
    drawn = (await h.client.post(f"{path}/draws", headers=OPERATOR)).json()
    assert [(e["member_id"], e["tickets"]) for e in drawn["entries"]] == [(rich, 3)]
    assert drawn["winner_entry_ids"] == recompute(drawn["seed"], drawn["entries"], 3)


async def test_a_lost_answer_leaves_the_entry_pending_until_the_job_confirms_it(
    paid: Paid,
) -> None:
    h = paid.harness
    campaign = await h.active("lottery", PAID)
    path = f"/v1/campaigns/{campaign['id']}"
    member = await h.member()
    await paid.credit(member, 100)
    working = h.service.rewards
    h.service.rewards = paid.client(LosingTransport(httpx.ASGITransport(app=paid.rewards_app)))

    lost = await h.post_as(member, f"{path}/entries", {"tickets": 2})
    assert lost.status_code == 503
    assert lost.json()["type"].endswith("/rewards-unavailable")
    assert await paid.balance(member) == 40, "rewards did debit; only the answer was lost"
    [pending] = (await h.client.get(f"{path}/entries", headers=OPERATOR)).json()["items"]
    assert pending["status"] == "pending"
    assert await h.events("campaign.entry_submitted") == []
    await h.client.post(f"{path}/end", headers=OPERATOR)
    early = await h.client.post(f"{path}/draws", headers=OPERATOR)
    assert early.status_code == 409
    assert early.json()["type"].endswith("/entries-pending")

    h.service.rewards = working
    job = h.app.state.pending_entries_job
    assert await run_once(h.runtime.db, job) == 0, "too young: the request may still answer"
    h.clock.advance(minutes=1)
    assert await run_once(h.runtime.db, job) == 1
    assert await run_once(h.runtime.db, job) == 0
    [entry] = (await h.client.get(f"{path}/entries", headers=OPERATOR)).json()["items"]
    assert (entry["id"], entry["status"]) == (pending["id"], "confirmed")
    assert await paid.balance(member) == 40, "asking again did not debit twice"
    assert len(await h.events("campaign.entry_submitted")) == 1
    assert (await h.client.post(f"{path}/draws", headers=OPERATOR)).status_code == 201


async def test_a_retried_request_resumes_its_pending_entry(paid: Paid) -> None:
    h = paid.harness
    campaign = await h.active("lottery", PAID)
    path = f"/v1/campaigns/{campaign['id']}/entries"
    member = await h.member()
    await paid.credit(member, 100)
    working = h.service.rewards
    h.service.rewards = paid.client(LosingTransport(httpx.ASGITransport(app=paid.rewards_app)))
    headers = auth(Role.MEMBER, member) | {"Idempotency-Key": "tap-once"}
    assert (await h.client.post(path, json={"tickets": 1}, headers=headers)).status_code == 503

    h.service.rewards = working
    retried = await h.client.post(path, json={"tickets": 1}, headers=headers)
    assert retried.status_code == 201, retried.text
    assert retried.json()["status"] == "confirmed"
    assert await paid.balance(member) == 70
    entries = (await h.client.get(path, headers=OPERATOR)).json()["items"]
    assert [e["id"] for e in entries] == [retried.json()["id"]]


async def test_a_refused_spend_writes_nothing_when_rewards_refuses(paid: Paid) -> None:
    h = paid.harness
    campaign = await h.active("lottery", {**PAID, "max_entries_per_member": 1})
    path = f"/v1/campaigns/{campaign['id']}/entries"
    member = await h.member()
    refused = await h.post_as(member, path, {"tickets": 1})
    assert refused.status_code == 409
    await paid.credit(member, 30)
    # The refused entry did not use up the member's only entry.
    assert (await h.post_as(member, path, {"tickets": 1})).status_code == 201
    assert await paid.balance(member) == 0
