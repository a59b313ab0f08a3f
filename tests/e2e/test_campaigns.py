"""Every campaign type end to end through the gateway, on the whole platform as processes.

Members register and sign in, join a community, take part over HTTP; operators create,
launch, end and settle; then the rewards API shows what was paid. The lifecycle job runs
every 0.2 s here, so campaigns that start or end "on time" do so within the test.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from shared.broker import free_port
from shared.runner import Platform
from shared.settings import SERVICE_PORTS
from tests.conftest import create_pg_database, drop_pg_database, pg_url

PASSWORD = "campaign-e2e-pass"
WAIT_S = 60.0


@pytest.fixture(scope="module")
def platform(db_lane: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """On the PostgreSQL lane every service gets a fresh database of its own."""
    data = tmp_path_factory.mktemp("campaigns-e2e")
    env = {"CAMPAIGNS_LIFECYCLE_INTERVAL_S": "0.2"}
    names = [f"t_e2ec_{service}_{uuid.uuid4().hex[:8]}" for service in SERVICE_PORTS]
    created: list[str] = []
    try:
        if db_lane == "postgresql":
            for service, name in zip(SERVICE_PORTS, names, strict=True):
                asyncio.run(create_pg_database(name))
                created.append(name)
                env[f"{service.upper()}_DATABASE_URL"] = pg_url(name)
        platform = Platform(data, gateway_port=free_port(), free_ports=True, env=env)
        # Ports are free ones here: tell campaigns where rewards and members listen.
        platform.extra_env["CAMPAIGNS_REWARDS_URL"] = platform.url("rewards")
        platform.extra_env["CAMPAIGNS_MEMBERS_URL"] = platform.url("members")
        with platform as running:
            yield running
    finally:
        for name in created:
            asyncio.run(drop_pg_database(name))


def eventually(
    call: Callable[[], httpx.Response],
    done: Callable[[httpx.Response], bool] = lambda r: r.status_code == 201,
    retry: tuple[int, ...] = (403, 404, 422),
) -> httpx.Response:
    """Repeat ``call`` while services catch up by event (memberships, posts reach campaigns)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        response = call()
        if done(response) or response.status_code not in (*retry, 200, 201):
            return response
        if time.monotonic() > deadline:
            return response
        time.sleep(0.2)


@dataclass
class Person:
    id: str
    headers: dict[str, str]
    invite_code: str


class Api:
    """The platform as an app sees it: the gateway, an operator token, signed-in members."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        token = http.post("/v1/auth/token", data={"username": "admin", "password": "admin"})
        assert token.status_code == 200, token.text
        self.operator = {"Authorization": f"Bearer {token.json()['access_token']}"}
        self.community_id = ""

    # --- people and places ------------------------------------------------------------------

    def register(self, nickname: str, invite_code: str | None = None) -> Person:
        email = f"{nickname.lower()}-{uuid.uuid4().hex[:8]}@e2e.example.com"
        body: dict[str, Any] = {"nickname": nickname, "email": email, "password": PASSWORD}
        if invite_code is not None:
            body["invite_code"] = invite_code
        registered = self.http.post("/v1/members", json=body)
        assert registered.status_code == 201, registered.text
        token = self.http.post("/v1/auth/token", data={"username": email, "password": PASSWORD})
        assert token.status_code == 200, token.text
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        return Person(registered.json()["id"], headers, registered.json()["invite_code"])

    def fan(self, nickname: str, invite_code: str | None = None) -> Person:
        """A registered member who joined the community."""
        person = self.register(nickname, invite_code)
        joined = self.http.post(
            f"/v1/communities/{self.community_id}/members", json={}, headers=person.headers
        )
        assert joined.status_code in (200, 201), joined.text
        return person

    def create_community(self, owner: Person) -> None:
        body = {"name": f"E2E fans {uuid.uuid4().hex[:6]}", "owner_id": owner.id,
                "timezone": "UTC"}  # fmt: skip
        created = self.http.post("/v1/communities", json=body, headers=self.operator)
        assert created.status_code == 201, created.text
        self.community_id = created.json()["id"]

    def post(self, author: dict[str, str], body: dict[str, Any] | None = None) -> dict[str, Any]:
        """A published post; content learns of the community and membership by event."""
        body = body or {"type": "image_text", "title": "My look", "body": "Today's outfit",
                        "image_urls": ["https://cdn.example.com/e2e.jpg"]}  # fmt: skip
        body = {"community_id": self.community_id, **body}
        published = eventually(lambda: self.http.post("/v1/posts", json=body, headers=author))
        assert published.status_code == 201, published.text
        post: dict[str, Any] = published.json()
        return post

    def template(self, stock: int) -> str:
        body = {"name": f"E2E {uuid.uuid4().hex[:6]}", "kind": "percent_off", "value": 20,
                "total_stock": stock}  # fmt: skip
        created = self.http.post("/v1/coupons", json=body, headers=self.operator)
        assert created.status_code == 201, created.text
        template_id: str = created.json()["id"]
        return template_id

    # --- campaigns --------------------------------------------------------------------------

    def launch(
        self, type_: str, rules: dict[str, Any], *, starts_in_s: float = -60, **fields: Any
    ) -> dict[str, Any]:
        now = datetime.now(UTC)
        body = {
            "name": f"E2E {type_}",
            "type": type_,
            "objective": "engagement",
            "community_id": self.community_id,
            "starts_at": (now + timedelta(seconds=starts_in_s)).isoformat(),
            "ends_at": (now + timedelta(hours=1)).isoformat(),
            "rules": rules,
            **fields,
        }
        created = self.http.post("/v1/campaigns", json=body, headers=self.operator)
        assert created.status_code == 201, created.text
        cid = created.json()["id"]
        launched = self.http.post(f"/v1/campaigns/{cid}/launch", headers=self.operator)
        assert launched.status_code == 200, launched.text
        campaign: dict[str, Any] = launched.json()
        return campaign

    def take_part(
        self, campaign: dict[str, Any], who: Person, what: str, body: Any = None
    ) -> httpx.Response:
        """POST ``/v1/campaigns/{id}/{what}``, retried until campaigns knows the membership."""
        path = f"/v1/campaigns/{campaign['id']}/{what}"
        return eventually(lambda: self.http.post(path, json=body, headers=who.headers))

    def status(self, campaign: dict[str, Any]) -> str:
        found = self.http.get(f"/v1/campaigns/{campaign['id']}", headers=self.operator)
        state: str = found.json()["status"]
        return state

    def wait_status(self, campaign: dict[str, Any], wanted: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while self.status(campaign) != wanted and time.monotonic() < deadline:
            time.sleep(0.1)
        assert self.status(campaign) == wanted

    def end_and_settle(self, campaign: dict[str, Any]) -> dict[str, Any]:
        path = f"/v1/campaigns/{campaign['id']}"
        ended = self.http.post(f"{path}/end", headers=self.operator)
        assert ended.status_code == 200, ended.text
        return self.settle(campaign)

    def settle(self, campaign: dict[str, Any]) -> dict[str, Any]:
        path = f"/v1/campaigns/{campaign['id']}/settle"
        settled = self.http.post(path, headers=self.operator)
        assert settled.status_code == 200, settled.text
        again = self.http.post(path, headers=self.operator)
        assert again.status_code == 409, "a campaign settles exactly once"
        assert again.json()["type"].endswith("/invalid-transition")
        result: dict[str, Any] = settled.json()
        return result

    # --- what rewards paid ------------------------------------------------------------------

    def balance(self, who: Person) -> int:
        account = self.http.get(f"/v1/accounts/{who.id}", headers=who.headers)
        assert account.status_code == 200, account.text
        available: int = account.json()["available"]
        return available

    def wait_balance(self, who: Person, expected: int) -> None:
        deadline = time.monotonic() + WAIT_S
        while self.balance(who) != expected and time.monotonic() < deadline:
            time.sleep(0.2)
        assert self.balance(who) == expected

    def remaining_stock(self, template_id: str) -> int:
        pages = self.http.get("/v1/coupons", params={"limit": 200}, headers=self.operator)
        [found] = [t for t in pages.json()["items"] if t["id"] == template_id]
        remaining: int = found["remaining_stock"]
        return remaining

    def wait_stock(self, template_id: str, expected: int) -> None:
        deadline = time.monotonic() + WAIT_S
        while self.remaining_stock(template_id) != expected and time.monotonic() < deadline:
            time.sleep(0.2)
        assert self.remaining_stock(template_id) == expected

    def grants(self, campaign: dict[str, Any]) -> list[dict[str, Any]]:
        found = self.http.get(f"/v1/campaigns/{campaign['id']}/grants", headers=self.operator)
        assert found.status_code == 200, found.text
        items: list[dict[str, Any]] = found.json()["items"]
        return items


@pytest.fixture(scope="module")
def api(platform: Platform) -> Iterator[Api]:
    with httpx.Client(base_url=platform.gateway_url, timeout=15) as http:
        api = Api(http)
        api.create_community(api.register("Owner"))
        yield api


def points(n: int) -> dict[str, Any]:
    return {"kind": "points", "points": n}


def test_referral_pays_the_referrer_when_the_invitee_activates(api: Api) -> None:
    referrer = api.fan("Referrer")
    campaign = api.launch(
        "referral",
        {"activation_window_days": 7, "per_referrer_cap": 5, "reward": points(100)},
        objective="acquisition",
        budget_points=1000,
    )
    assert api.take_part(campaign, referrer, "participants").status_code == 201
    invitee = api.fan("Invitee", invite_code=referrer.invite_code)
    api.post(invitee.headers)  # the first post activates the referral
    api.wait_balance(referrer, 100)

    settled = api.end_and_settle(campaign)
    assert (settled["grants"], settled["points"]) == (1, 100)
    assert api.balance(invitee) == 0


def test_check_in_challenge_pays_milestones_at_once_and_completion_at_settlement(api: Api) -> None:
    fans = [api.fan("Runner"), api.fan("Walker")]
    rules = {"days_required": 1, "milestones": [{"checkins": 1, "reward": points(10)}],
             "completion_reward": points(50)}  # fmt: skip
    campaign = api.launch("checkin", rules, timezone="UTC")
    for fan in fans:
        checked = api.take_part(campaign, fan, "checkins", {"note": "5 km"})
        assert checked.status_code == 201, checked.text
        assert checked.json()["completed"] is True
    twice = api.take_part(campaign, fans[0], "checkins", {})
    assert twice.status_code == 409
    assert twice.json()["type"].endswith("/already-checked-in")
    board = api.http.get(f"/v1/campaigns/{campaign['id']}/leaderboard", headers=fans[0].headers)
    assert {row["member_id"] for row in board.json()["items"]} == {f.id for f in fans}
    for fan in fans:
        api.wait_balance(fan, 10)  # the milestone is paid at once

    soon = datetime.now(UTC) + timedelta(seconds=2)
    edit = api.http.patch(
        f"/v1/campaigns/{campaign['id']}", json={"ends_at": soon.isoformat()},
        headers=api.operator,
    )  # fmt: skip
    assert edit.status_code == 409, "an active campaign's window is fixed"
    api.http.post(f"/v1/campaigns/{campaign['id']}/end", headers=api.operator)
    settled = api.settle(campaign)
    assert (settled["grants"], settled["points"]) == (4, 120)
    for fan in fans:
        api.wait_balance(fan, 60)


def test_a_campaign_starts_and_ends_on_time_by_itself(api: Api) -> None:
    fan = api.fan("Punctual")
    now = datetime.now(UTC)
    body = {
        "name": "E2E short challenge", "type": "checkin", "objective": "engagement",
        "community_id": api.community_id, "timezone": "UTC",
        "starts_at": (now + timedelta(seconds=3)).isoformat(),
        "ends_at": (now + timedelta(seconds=9)).isoformat(),
        "rules": {"days_required": 1, "completion_reward": points(7)},
    }  # fmt: skip
    created = api.http.post("/v1/campaigns", json=body, headers=api.operator).json()
    launched = api.http.post(f"/v1/campaigns/{created['id']}/launch", headers=api.operator)
    assert launched.json()["status"] == "scheduled"
    api.wait_status(created, "active")
    assert api.take_part(created, fan, "checkins", {}).status_code == 201
    api.wait_status(created, "ended")
    late = api.http.post(f"/v1/campaigns/{created['id']}/checkins", json={}, headers=fan.headers)
    assert late.status_code == 409
    assert late.json()["type"].endswith("/campaign-not-open")
    settled = api.settle(created)
    assert settled["points"] == 7
    api.wait_balance(fan, 7)


def test_ugc_contest_pays_the_most_voted_entry(api: Api) -> None:
    authors = [api.fan("Stylist"), api.fan("Model")]
    voters = [api.fan("VoterA"), api.fan("VoterB")]
    rules = {"winners": 1, "votes_per_day": 2, "prize": points(300)}
    campaign = api.launch("ugc", rules, budget_points=300)
    entries = []
    for author in authors:
        post = api.post(author.headers)
        entered = api.take_part(campaign, author, "entries", {"post_id": post["id"]})
        assert entered.status_code == 201, entered.text
        entries.append(entered.json()["id"])
    for voter in voters:
        assert api.take_part(campaign, voter, "votes", {"entry_id": entries[1]}).status_code == 201
    # Sent once: take_part retries a 422 while campaigns catches up, and the author's
    # membership is known already (their entry was accepted).
    own = api.http.post(
        f"/v1/campaigns/{campaign['id']}/votes",
        json={"entry_id": entries[0]},
        headers=authors[0].headers,
    )
    assert own.status_code == 422
    assert own.json()["type"].endswith("/self-vote")
    assert api.take_part(campaign, voters[0], "votes", {"entry_id": entries[0]}).status_code == 201
    over = api.take_part(campaign, voters[0], "votes", {"entry_id": entries[0]})
    assert over.status_code == 409

    settled = api.end_and_settle(campaign)
    assert (settled["grants"], settled["points"]) == (1, 300)
    api.wait_balance(authors[1], 300)
    assert api.balance(authors[0]) == 0


def recompute(seed: str, entries: list[dict[str, Any]], count: int) -> list[str]:
    """The published algorithm, written independently: ticket i of an entry is
    sha256(f"{seed}:{entry_id}:{i}"); an entry ranks by its lowest ticket; first N win."""

    def best(entry: dict[str, Any]) -> tuple[str, str]:
        tickets = (
            hashlib.sha256(f"{seed}:{entry['entry_id']}:{i}".encode()).hexdigest()
            for i in range(entry["tickets"])
        )
        return min(tickets), entry["entry_id"]

    return [e["entry_id"] for e in sorted(entries, key=best)][:count]


def test_lottery_draw_is_recomputable_and_winners_are_paid(api: Api) -> None:
    entrants = [api.fan(f"Lucky{i}") for i in range(5)]
    rules = {"winners": 2, "prize": points(500)}
    campaign = api.launch("lottery", rules, objective="awareness", budget_points=1000)
    for fan in entrants:
        assert api.take_part(campaign, fan, "entries").status_code == 201
    again = api.take_part(campaign, entrants[0], "entries")
    assert again.status_code == 409
    assert again.json()["type"].endswith("/entry-limit-reached")
    path = f"/v1/campaigns/{campaign['id']}"
    assert api.http.post(f"{path}/end", headers=api.operator).status_code == 200
    drawn = api.http.post(f"{path}/draws", headers=api.operator)
    assert drawn.status_code == 201, drawn.text
    draw = drawn.json()
    assert hashlib.sha256(draw["seed"].encode()).hexdigest() == campaign["seed_hash"]
    assert draw["winner_entry_ids"] == recompute(draw["seed"], draw["entries"], 2)

    settled = api.settle(campaign)
    assert (settled["grants"], settled["points"]) == (2, 1000)
    owner = {e["entry_id"]: e["member_id"] for e in draw["entries"]}
    winners = {owner[e] for e in draw["winner_entry_ids"]}
    for fan in entrants:
        api.wait_balance(fan, 500 if fan.id in winners else 0)


QUIZ = {
    "type": "quiz",
    "title": "How well do you know our coffee?",
    "questions": [
        {"id": "q1", "text": "Best ratio?", "correct_option_ids": ["a"],
         "options": [{"id": "a", "text": "1:15"}, {"id": "b", "text": "1:3"}]},
        {"id": "q2", "text": "Best grind?", "correct_option_ids": ["b"],
         "options": [{"id": "a", "text": "Dust"}, {"id": "b", "text": "Medium"}]},
    ],
}  # fmt: skip


def test_quiz_contest_pays_the_best_score(api: Api) -> None:
    quiz = api.post(api.operator, QUIZ)
    expert, novice = api.fan("Expert"), api.fan("Novice")
    rules = {"post_id": quiz["id"], "winners": 1, "prize": points(80)}
    campaign = api.launch("quiz", rules)
    for fan in (expert, novice):
        assert api.take_part(campaign, fan, "participants").status_code == 201
    answers = {expert.id: {"q1": ["a"], "q2": ["b"]}, novice.id: {"q1": ["b"], "q2": ["b"]}}
    for fan in (novice, expert):
        answered = api.http.post(
            f"/v1/posts/{quiz['id']}/answers", json={"answers": answers[fan.id]},
            headers=fan.headers,
        )  # fmt: skip
        assert answered.status_code == 201, answered.text
    board_path = f"/v1/campaigns/{campaign['id']}/leaderboard"

    def scored() -> list[float]:
        rows = api.http.get(board_path, headers=api.operator).json()["items"]
        return [row["score"] for row in rows]

    deadline = time.monotonic() + WAIT_S
    while scored() != [2.0, 1.0] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert scored() == [2.0, 1.0]

    settled = api.end_and_settle(campaign)
    assert (settled["grants"], settled["points"]) == (1, 80)
    api.wait_balance(expert, 80)
    assert api.balance(novice) == 0


def test_flash_sale_releases_stock_at_its_start_and_never_oversells(api: Api) -> None:
    template = api.template(stock=10)
    buyers = [api.fan(f"Buyer{i}") for i in range(3)]
    rules = {"stock": 2, "per_member_limit": 1, "coupon_template_id": template}
    campaign = api.launch("flash_sale", rules, objective="sales", starts_in_s=3)
    assert campaign["status"] == "scheduled"
    assert campaign["stock_left"] == 2
    early = api.http.post(
        f"/v1/campaigns/{campaign['id']}/entries", json=None, headers=buyers[0].headers
    )
    assert early.status_code == 409
    assert early.json()["type"].endswith("/campaign-not-open")
    api.wait_status(campaign, "active")
    for buyer in buyers[:2]:
        assert api.take_part(campaign, buyer, "entries").status_code == 201
    gone = api.take_part(campaign, buyers[2], "entries")
    assert gone.status_code == 409
    assert gone.json()["type"].endswith("/sold-out")
    api.wait_stock(template, 8)

    settled = api.end_and_settle(campaign)
    assert (settled["grants"], settled["coupons"]) == (2, 2)
    assert {g["member_id"] for g in api.grants(campaign)} == {b.id for b in buyers[:2]}


def test_group_buy_issues_coupons_to_a_formed_group_only(api: Api) -> None:
    template = api.template(stock=10)
    leader, friend, loner = api.fan("Leader"), api.fan("Friend"), api.fan("Loner")
    rules = {"group_size": 2, "coupon_template_id": template}
    campaign = api.launch("group_buy", rules, objective="sales")
    started = api.take_part(campaign, leader, "participants")
    assert started.status_code == 201, started.text
    group_id = started.json()["group_id"]
    assert (
        api.take_part(campaign, friend, "participants", {"group_id": group_id}).status_code == 201
    )
    full = api.take_part(campaign, loner, "participants", {"group_id": group_id})
    assert full.status_code == 409
    assert full.json()["type"].endswith("/group-not-open")
    assert api.take_part(campaign, loner, "participants", {}).status_code == 201
    api.wait_stock(template, 8)

    settled = api.end_and_settle(campaign)
    assert settled["coupons"] == 2
    assert {g["member_id"] for g in api.grants(campaign)} == {leader.id, friend.id}


def test_trial_selects_applicants_and_pays_for_the_review(api: Api) -> None:
    chosen, other = api.fan("Tester"), api.fan("Hopeful")
    rules = {"slots": 1, "questions": ["Why you?"], "review_reward": points(40)}
    campaign = api.launch("trial", rules)
    for fan in (chosen, other):
        applied = api.take_part(campaign, fan, "participants", {"answers": ["I love it"]})
        assert applied.status_code == 201, applied.text
    path = f"/v1/campaigns/{campaign['id']}/participants"
    selected = api.http.patch(f"{path}/{chosen.id}", json={"selected": True}, headers=api.operator)
    assert selected.status_code == 200, selected.text
    full = api.http.patch(f"{path}/{other.id}", json={"selected": True}, headers=api.operator)
    assert full.status_code == 409
    assert full.json()["type"].endswith("/no-slots-left")
    api.post(chosen.headers, {"type": "article", "title": "Review", "body": "Five stars."})

    def reviewed() -> bool:
        items = api.http.get(path, headers=api.operator).json()["items"]
        return any(p["member_id"] == chosen.id and p["completed_at"] for p in items)

    deadline = time.monotonic() + WAIT_S
    while not reviewed() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert reviewed()

    settled = api.end_and_settle(campaign)
    assert (settled["grants"], settled["points"]) == (1, 40)
    api.wait_balance(chosen, 40)
    assert api.balance(other) == 0


def test_lottery_tickets_bought_with_points_are_spent_in_rewards_and_weigh_in_the_draw(
    api: Api,
) -> None:
    rich, poor = api.fan("Rich"), api.fan("Poor")

    def credit(fan: Person, amount: int) -> None:
        credited = api.http.post(
            f"/v1/accounts/{fan.id}/adjustments",
            json={"amount": amount, "reason": "e2e starting balance"}, headers=api.operator,
        )  # fmt: skip
        assert credited.status_code == 201, credited.text

    credit(rich, 100)
    credit(poor, 20)
    rules = {"winners": 1, "prize": points(1000), "entry": "points", "points_per_ticket": 30,
             "max_tickets_per_entry": 3}  # fmt: skip
    campaign = api.launch("lottery", rules, objective="sales")
    bought = api.take_part(campaign, rich, "entries", {"tickets": 3})
    assert bought.status_code == 201, bought.text
    assert (bought.json()["tickets"], bought.json()["points_spent"]) == (3, 90)
    assert api.balance(rich) == 10
    short = api.take_part(campaign, poor, "entries", {"tickets": 1})
    assert short.status_code == 409
    assert short.json()["type"].endswith("/insufficient-points")
    assert api.balance(poor) == 20
    path = f"/v1/campaigns/{campaign['id']}"
    listed = api.http.get(f"{path}/entries", headers=api.operator).json()["items"]
    assert [(e["member_id"], e["tickets"], e["status"]) for e in listed] == [
        (rich.id, 3, "confirmed")
    ]
    credit(poor, 10)
    assert api.take_part(campaign, poor, "entries", {"tickets": 1}).status_code == 201
    assert api.balance(poor) == 0

    assert api.http.post(f"{path}/end", headers=api.operator).status_code == 200
    draw = api.http.post(f"{path}/draws", headers=api.operator).json()
    weights = {e["member_id"]: e["tickets"] for e in draw["entries"]}
    assert weights == {rich.id: 3, poor.id: 1}
    assert draw["winner_entry_ids"] == recompute(draw["seed"], draw["entries"], 1)
    settled = api.settle(campaign)
    assert settled["points"] == 1000
    owner = {e["entry_id"]: e["member_id"] for e in draw["entries"]}
    winner = owner[draw["winner_entry_ids"][0]]
    api.wait_balance(rich, 1010 if winner == rich.id else 10)
    api.wait_balance(poor, 1000 if winner == poor.id else 0)
