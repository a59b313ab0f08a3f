"""The rewards HTTP surface: accounts, adjustments, rules, catalogue, redemptions, errors."""

from __future__ import annotations

import uuid

from sqlalchemy import update

from services.rewards.models import Account
from shared.auth import Role
from shared.events.contracts.members import MemberErased
from tests.conftest import auth
from tests.rewards.conftest import OPERATOR, Rewards, like


async def test_an_unknown_member_has_an_empty_account(rewards: Rewards) -> None:
    member = str(uuid.uuid4())
    response = await rewards.client.get(f"/v1/accounts/{member}", headers=auth(Role.MEMBER, member))
    assert response.status_code == 200
    assert response.json() == {
        "member_id": member,
        "available": 0,
        "pending": 0,
        "lifetime": 0,
        "tier": None,
        "tier_review_at": None,
    }


async def test_members_see_only_their_own_account_and_partners_need_a_scope(
    rewards: Rewards,
) -> None:
    member = str(uuid.uuid4())
    path = f"/v1/accounts/{member}"
    assert (await rewards.client.get(path)).status_code == 401
    assert (await rewards.client.get(path, headers=auth(Role.MEMBER))).status_code == 403
    assert (await rewards.client.get(path, headers=auth(Role.PARTNER))).status_code == 403
    reader = auth(Role.PARTNER, scopes=frozenset({"rewards:read"}))
    assert (await rewards.client.get(path, headers=reader)).status_code == 200
    assert (await rewards.client.get(f"{path}/entries", headers=reader)).status_code == 200
    audit = await rewards.client.get("/v1/accounts/audit", headers=auth(Role.MEMBER, member))
    assert audit.status_code == 403


async def test_operator_adjustments_credit_and_debit_with_a_reason_and_an_event(
    rewards: Rewards,
) -> None:
    member = str(uuid.uuid4())
    await rewards.credit(member, 100)
    response = await rewards.client.post(
        f"/v1/accounts/{member}/adjustments",
        json={"amount": -30, "reason": "goodwill reversal"},
        headers=OPERATOR,
    )
    assert response.status_code == 201, response.text
    assert response.json()["account"]["available"] == 70
    entries = (await rewards.client.get(f"/v1/accounts/{member}/entries", headers=OPERATOR)).json()[
        "items"
    ]
    assert [e["amount"] for e in entries] == [-30, 100]
    assert entries[0]["operator_id"] == "operator-1"
    assert entries[0]["reason"] == "goodwill reversal"
    assert sum(line["amount"] for line in entries[0]["lines"]) == 0
    adjusted = await rewards.events("points.adjusted")
    assert [e.data["amount"] for e in adjusted] == [100, -30]


async def test_adjustments_refuse_zero_overdrafts_and_members(rewards: Rewards) -> None:
    member = str(uuid.uuid4())
    path = f"/v1/accounts/{member}/adjustments"
    zero = await rewards.client.post(path, json={"amount": 0, "reason": "nope"}, headers=OPERATOR)
    assert zero.status_code == 422
    assert zero.headers["content-type"] == "application/problem+json"
    overdraft = await rewards.client.post(
        path, json={"amount": -5, "reason": "too much"}, headers=OPERATOR
    )
    assert overdraft.status_code == 409
    assert overdraft.json()["balance"] == {"available": 0}
    by_member = await rewards.client.post(
        path, json={"amount": 5, "reason": "free"}, headers=auth(Role.MEMBER, member)
    )
    assert by_member.status_code == 403
    assert (await rewards.audit())["balanced"]


async def test_entries_are_paginated_with_a_cursor(rewards: Rewards) -> None:
    member = str(uuid.uuid4())
    for amount in range(1, 6):
        await rewards.credit(member, amount)
    path = f"/v1/accounts/{member}/entries?limit=2"
    seen: list[int] = []
    cursor = None
    while True:
        url = path + (f"&cursor={cursor}" if cursor else "")
        page = (await rewards.client.get(url, headers=OPERATOR)).json()
        seen += [e["amount"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [5, 4, 3, 2, 1]
    bad = await rewards.client.get(f"{path}&cursor=garbage", headers=OPERATOR)
    assert bad.status_code == 422


async def test_a_rule_for_an_unknown_event_type_is_a_422_naming_the_field(
    rewards: Rewards,
) -> None:
    for event_type in ("post.exploded", "post.viewed"):
        response = await rewards.client.post(
            "/v1/earning-rules",
            json={"name": "x", "event_type": event_type, "points": 5},
            headers=OPERATOR,
        )
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "body.event_type"
    negative = await rewards.client.post(
        "/v1/earning-rules",
        json={"name": "x", "event_type": "post.shared", "points": -5},
        headers=OPERATOR,
    )
    assert negative.status_code == 422
    assert negative.json()["errors"][0]["field"] == "body.points"


async def test_rules_are_listed_for_operators_and_readers(rewards: Rewards) -> None:
    rule = await rewards.rule("post.shared", 3)
    listed = await rewards.client.get("/v1/earning-rules", headers=OPERATOR)
    assert [r["id"] for r in listed.json()] == [rule["id"]]
    assert (
        await rewards.client.get("/v1/earning-rules", headers=auth(Role.MEMBER))
    ).status_code == 403
    off = await rewards.client.post(f"/v1/earning-rules/{rule['id']}/deactivate", headers=OPERATOR)
    assert off.json()["active"] is False


async def test_a_like_pays_the_post_author_but_a_self_like_pays_nobody(rewards: Rewards) -> None:
    rule = await rewards.rule("reaction.added", 5)
    author = str(uuid.uuid4())
    await rewards.deliver(like(author))
    await rewards.deliver(like(author, liker=author))
    account = await rewards.account(author)
    assert account["available"] == 5
    [entry] = (await rewards.client.get(f"/v1/accounts/{author}/entries", headers=OPERATOR)).json()[
        "items"
    ]
    assert entry["rule_id"] == rule["id"]
    assert entry["reason_code"] == "reaction.added"


async def test_redemption_spends_points_and_stock_together(rewards: Rewards) -> None:
    member = str(uuid.uuid4())
    await rewards.credit(member, 100)
    item = await rewards.item(40, stock=3)
    response = await rewards.redeem(
        member, item["id"], quantity=2, shipping_address="1 Bund Road, Shanghai"
    )
    assert response.status_code == 201, response.text
    assert response.json()["points"] == 80
    assert (await rewards.account(member))["available"] == 20
    stock = (await rewards.client.get(f"/v1/catalog/{item['id']}", headers=OPERATOR)).json()
    assert stock["stock"] == 1
    [spent] = await rewards.events("points.spent")
    assert spent.data["amount"] == 80
    [redeemed] = await rewards.events("reward.redeemed")
    assert redeemed.data["item_id"] == item["id"]


async def test_redemption_without_an_idempotency_key_is_a_422_naming_it(rewards: Rewards) -> None:
    member = str(uuid.uuid4())
    item = await rewards.item(10, stock=1)
    response = await rewards.client.post(
        "/v1/redemptions", json={"item_id": item["id"]}, headers=auth(Role.MEMBER, member)
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == ["header.Idempotency-Key"]


async def test_short_balance_is_a_409_with_the_balance_and_writes_nothing(
    rewards: Rewards,
) -> None:
    member = str(uuid.uuid4())
    await rewards.credit(member, 30)
    item = await rewards.item(50, stock=5)
    response = await rewards.redeem(member, item["id"])
    assert response.status_code == 409
    problem = response.json()
    assert problem["balance"] == {"available": 30}
    assert problem["required"] == 50
    stock = (await rewards.client.get(f"/v1/catalog/{item['id']}", headers=OPERATOR)).json()
    assert stock["stock"] == 5
    assert await rewards.events("reward.redeemed") == []


async def test_the_same_idempotency_key_redeems_once(rewards: Rewards) -> None:
    member = str(uuid.uuid4())
    await rewards.credit(member, 100)
    item = await rewards.item(10, stock=None)
    first = await rewards.redeem(member, item["id"], key="order-1")
    again = await rewards.redeem(member, item["id"], key="order-1")
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert (await rewards.account(member))["available"] == 90


async def test_members_redeem_only_for_themselves(rewards: Rewards) -> None:
    item = await rewards.item(10, stock=None)
    response = await rewards.redeem(str(uuid.uuid4()), item["id"], member_id=str(uuid.uuid4()))
    assert response.status_code == 403


async def test_an_out_of_stock_or_unknown_item_is_a_clear_problem(rewards: Rewards) -> None:
    member = str(uuid.uuid4())
    await rewards.credit(member, 100)
    item = await rewards.item(10, stock=0)
    assert (await rewards.redeem(member, item["id"])).status_code == 409
    assert (await rewards.redeem(member, str(uuid.uuid4()))).status_code == 404
    assert (await rewards.account(member))["available"] == 100


async def test_member_erasure_keeps_the_ledger_and_drops_the_address(rewards: Rewards) -> None:
    member = str(uuid.uuid4())
    await rewards.credit(member, 100)
    item = await rewards.item(10, stock=None)
    await rewards.redeem(member, item["id"], shipping_address="1 Bund Road", note="ring twice")
    await rewards.deliver(MemberErased(member_id=member, erased_at=like(member).reacted_at))
    page = (
        await rewards.client.get(f"/v1/redemptions?member_id={member}", headers=OPERATOR)
    ).json()
    [redemption] = page["items"]
    assert redemption["shipping_address"] is None
    assert redemption["note"] is None
    assert (await rewards.account(member))["available"] == 90
    assert (await rewards.audit())["balanced"]


async def test_the_audit_catches_a_balance_changed_behind_the_ledger(rewards: Rewards) -> None:
    member, bystander = str(uuid.uuid4()), str(uuid.uuid4())
    await rewards.credit(member, 10)
    await rewards.credit(bystander, 10)
    assert (await rewards.audit())["balanced"]
    async with rewards.runtime.db.session() as session:
        await session.execute(
            update(Account).where(Account.member_id == member).values(available=11)
        )
    audit = await rewards.audit()
    assert not audit["balanced"]
    assert audit["accounts_checked"] == 2
    [mismatch] = audit["mismatches"]
    assert mismatch["member_id"] == member
    assert (mismatch["stored_available"], mismatch["ledger_available"]) == (11, 10)


async def test_dates_without_a_time_zone_are_a_422_not_a_crash(rewards: Rewards) -> None:
    response = await rewards.client.post(
        "/v1/earning-rules",
        json={
            "name": "x",
            "event_type": "post.shared",
            "points": 5,
            "starts_at": "2026-01-01T00:00:00",
        },
        headers=OPERATOR,
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body.starts_at"


async def test_a_service_spends_points_once_per_key_and_members_hear_of_it(
    rewards: Rewards,
) -> None:
    member = str(uuid.uuid4())
    await rewards.credit(member, 50)
    path = f"/internal/v1/accounts/{member}/spends"
    body = {"amount": 20, "reason_code": "lottery_entry", "reason": "Lottery entry e-1"}
    campaigns = auth(Role.PARTNER, "campaigns", scopes=frozenset({"points:spend"}))
    for refused in (OPERATOR, auth(Role.PARTNER, "shop", scopes=frozenset({"rewards:*"}))):
        response = await rewards.client.post(
            path, json=body, headers={**refused, "Idempotency-Key": "e-1"}
        )
        assert response.status_code == 403, response.text
    for _ in range(2):
        response = await rewards.client.post(
            path, json=body, headers={**campaigns, "Idempotency-Key": "e-1"}
        )
        assert response.status_code == 201, response.text
        assert response.json()["account"]["available"] == 30
    short = await rewards.client.post(
        path, json={**body, "amount": 31}, headers={**campaigns, "Idempotency-Key": "e-2"}
    )
    assert short.status_code == 409
    assert short.json()["balance"] == {"available": 30}
    spent = [e.data for e in await rewards.events("points.spent")]
    assert [(e["amount"], e["reason_code"]) for e in spent] == [(20, "lottery_entry")]
    assert (await rewards.audit())["balanced"] is True
