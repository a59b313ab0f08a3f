"""Coupons: templates, unguessable codes in bulk, stock under concurrency, redeem once, refund."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from services.rewards.coupons import ALPHABET, CODE_LENGTH
from services.rewards.models import Coupon, CouponTemplate
from shared.auth import Role
from tests.conftest import auth
from tests.rewards.conftest import OPERATOR, Rewards

NOW = datetime.now(UTC)


async def template(rewards: Rewards, **extra: Any) -> dict[str, Any]:
    body = {"name": "10% off", "kind": "percent_off", "value": 10, **extra}
    response = await rewards.client.post("/v1/coupons", json=body, headers=OPERATOR)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def issue(rewards: Rewards, template_id: str, member: str) -> Any:
    return await rewards.client.post(
        f"/v1/coupons/templates/{template_id}/issue", json={"member_id": member}, headers=OPERATOR
    )


async def test_templates_validate_their_kind(rewards: Rewards) -> None:
    for body in (
        {"name": "x", "kind": "percent_off", "value": 150},
        {"name": "x", "kind": "amount_off"},
        {"name": "x", "kind": "free_gift"},
        {"name": "x", "kind": "cashback", "value": 5},
    ):
        response = await rewards.client.post("/v1/coupons", json=body, headers=OPERATOR)
        assert response.status_code == 422, body
    created = await template(
        rewards, kind="free_gift", value=None, gift="Tote bag", segment_id="seg-1"
    )
    assert created["segment_id"] == "seg-1"
    member = await rewards.client.post(
        "/v1/coupons", json={"name": "x", "kind": "free_shipping"}, headers=auth(Role.MEMBER)
    )
    assert member.status_code == 403


async def test_bulk_generation_makes_unique_unambiguous_codes(rewards: Rewards) -> None:
    created = await template(rewards)
    response = await rewards.client.post(
        f"/v1/coupons/templates/{created['id']}/codes", json={"count": 20_000}, headers=OPERATOR
    )
    assert response.status_code == 201, response.text
    assert response.json()["generated"] == 20_000
    async with rewards.runtime.db.session() as session:
        codes = (await session.scalars(select(Coupon.code))).all()
    assert len(set(codes)) == 20_000
    assert all(len(code) == CODE_LENGTH and set(code) <= set(ALPHABET) for code in codes)
    assert not set("01OIL") & set(ALPHABET)


async def test_issuing_never_oversells_stock_under_concurrency(rewards: Rewards) -> None:
    created = await template(rewards, total_stock=10)
    await rewards.client.post(
        f"/v1/coupons/templates/{created['id']}/codes", json={"count": 5}, headers=OPERATOR
    )
    members = [str(uuid.uuid4()) for _ in range(60)]
    responses = await asyncio.gather(*(issue(rewards, created["id"], m) for m in members))
    assert Counter(r.status_code for r in responses) == {201: 10, 409: 50}
    async with rewards.runtime.db.session() as session:
        issued = await session.scalar(
            select(func.count()).select_from(Coupon).where(Coupon.status == "issued")
        )
    assert issued == 10
    listed = (await rewards.client.get("/v1/coupons", headers=OPERATOR)).json()["items"]
    assert listed[0]["remaining_stock"] == 0


async def test_the_per_member_limit_holds(rewards: Rewards) -> None:
    created = await template(rewards, per_member_limit=2)
    member = str(uuid.uuid4())
    statuses = [(await issue(rewards, created["id"], member)).status_code for _ in range(3)]
    assert statuses == [201, 201, 409]


async def test_a_code_redeems_exactly_once_and_again_after_a_refund(rewards: Rewards) -> None:
    created = await template(rewards)
    member = str(uuid.uuid4())
    code = (await issue(rewards, created["id"], member)).json()["code"]
    mine = auth(Role.MEMBER, member)
    check = await rewards.client.get(f"/v1/coupons/{code.lower()}", headers=mine)
    assert check.json()["valid"] is True
    other = await rewards.client.post(f"/v1/coupons/{code}/redeem", headers=auth(Role.MEMBER))
    assert other.status_code == 403

    attempts = await asyncio.gather(
        *(
            rewards.client.post(
                f"/v1/coupons/{code}/redeem", json={"order_ref": "o-1"}, headers=mine
            )
            for _ in range(20)
        )
    )
    assert Counter(r.status_code for r in attempts) == {200: 1, 409: 19}
    assert len(await rewards.events("coupon.redeemed")) == 1
    check = await rewards.client.get(f"/v1/coupons/{code}", headers=mine)
    assert (check.json()["valid"], check.json()["reason"]) == (False, "already redeemed")

    refund = await rewards.client.post(f"/v1/coupons/{code}/refund", headers=OPERATOR)
    assert refund.status_code == 200
    assert refund.json()["status"] == "issued"
    again = await rewards.client.post(f"/v1/coupons/{code}/redeem", headers=mine)
    assert again.status_code == 200


async def test_expired_and_unknown_codes_are_clear_problems(rewards: Rewards) -> None:
    created = await template(rewards, valid_until=(NOW + timedelta(days=1)).isoformat())
    member = str(uuid.uuid4())
    code = (await issue(rewards, created["id"], member)).json()["code"]
    async with rewards.runtime.db.session() as session:
        await session.execute(
            update(CouponTemplate)
            .where(CouponTemplate.id == created["id"])
            .values(valid_until=NOW - timedelta(seconds=1))
        )
    expired = await rewards.client.post(
        f"/v1/coupons/{code}/redeem", headers=auth(Role.MEMBER, member)
    )
    assert expired.status_code == 409
    assert expired.json()["type"].endswith("/coupon-not-valid")
    unknown = await rewards.client.post("/v1/coupons/ABCDEFGHJKMN/redeem", headers=OPERATOR)
    assert unknown.status_code == 404
    assert (await issue(rewards, created["id"], member)).status_code == 409


async def test_a_coupon_catalogue_item_issues_a_code_for_points(rewards: Rewards) -> None:
    created = await template(rewards, total_stock=3)
    member = str(uuid.uuid4())
    await rewards.credit(member, 100)
    item = await rewards.item(
        30, stock=None, kind="coupon", name="10% voucher", coupon_template_id=created["id"]
    )
    response = await rewards.redeem(member, item["id"])
    assert response.status_code == 201, response.text
    code = response.json()["coupon_code"]
    assert code
    check = await rewards.client.get(f"/v1/coupons/{code}", headers=auth(Role.MEMBER, member))
    assert check.json()["coupon"]["member_id"] == member
    assert (await rewards.account(member))["available"] == 70


async def test_partners_issue_coupons_only_with_the_write_scope(rewards: Rewards) -> None:
    created = await template(rewards)
    path = f"/v1/coupons/templates/{created['id']}/issue"
    body = {"member_id": str(uuid.uuid4())}
    reader = auth(Role.PARTNER, scopes=frozenset({"rewards:read"}))
    writer = {**auth(Role.PARTNER, scopes=frozenset({"rewards:write"})), "Idempotency-Key": "i-1"}
    assert (await rewards.client.post(path, json=body, headers=reader)).status_code == 403
    first = await rewards.client.post(path, json=body, headers=writer)
    again = await rewards.client.post(path, json=body, headers=writer)
    assert first.status_code == again.status_code == 201
    assert first.json()["code"] == again.json()["code"]
    assert len(await rewards.events("coupon.issued")) == 1
