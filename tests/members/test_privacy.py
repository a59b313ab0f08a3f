"""Privacy: export everything, erase personal data for good, and who may do either."""

from __future__ import annotations

import httpx
from sqlalchemy import text

from tests.members.conftest import OPERATOR, as_member, outbox_events, register, runtime_of

PERSONAL = {
    "nickname": "Mei Lin",
    "email": "mei.lin@example.com",
    "phone": "+8613700137000",
    "avatar_url": "https://cdn.example.com/mei.png",
    "birth_year": 1994,
    "gender": "female",
    "country": "CN",
    "province": "CN-GD",
    "city": "Shenzhen",
    "interests": ["photography"],
    "password": "a long passphrase",
    "marketing_consent": True,
}


async def test_export_returns_everything_held(members: httpx.AsyncClient) -> None:
    mei = await register(members, **PERSONAL)
    invitee = await register(members, invite_code=mei["invite_code"])
    response = await members.get(f"/v1/members/{mei['id']}/export", headers=as_member(mei))
    assert response.status_code == 200
    export = response.json()
    assert export["profile"]["email"] == PERSONAL["email"]
    assert export["profile"]["phone"] == PERSONAL["phone"]
    assert export["profile"]["city"] == "Shenzhen"
    assert export["invitees"] == [invitee["id"]]
    assert (
        await members.get(f"/v1/members/{mei['id']}/export", headers=as_member(invitee))
    ).status_code == 403


async def test_erasure_leaves_no_personal_data_in_the_database(members: httpx.AsyncClient) -> None:
    mei = await register(members, **PERSONAL)
    owner = await register(members)
    community = (
        await members.post("/v1/communities", json={"name": "Lens"}, headers=as_member(owner))
    ).json()
    await members.post(
        f"/v1/communities/{community['id']}/members", json={}, headers=as_member(mei)
    )
    response = await members.delete(f"/v1/members/{mei['id']}", headers=as_member(mei))
    assert response.status_code == 204
    async with runtime_of(members).db.session() as session:
        rows = {}
        for table in ("members", "member_interests", "community_members", "referral_days"):
            result = await session.execute(text(f"SELECT * FROM {table}"))  # noqa: S608
            rows[table] = [dict(r) for r in result.mappings()]
    cells = [value for table in rows.values() for row in table for value in row.values()]
    text_cells = repr([value for value in cells if isinstance(value, str)])
    for value in ("Mei Lin", "mei.lin", "13700137000", "mei.png", "Shenzhen", "CN-GD"):
        assert value not in text_cells, value
    # Compared whole: "1994" can turn up inside a stored timestamp's microseconds.
    assert [value for value in cells if value in (1994, "1994")] == [], "birth year kept"
    [row] = [r for r in rows["members"] if r["id"] == mei["id"]]
    assert row["erased_at"] is not None
    assert row["password_hash"] is None
    assert [r for r in rows["community_members"] if r["member_id"] == mei["id"]] == []
    [erased] = await outbox_events(members, "member.erased")
    assert erased.data["member_id"] == mei["id"]
    gone = await members.get(f"/v1/members/{mei['id']}", headers=OPERATOR)
    assert gone.status_code == 410
    again = await members.post("/v1/members", json={"nickname": "new", "email": PERSONAL["email"]})
    assert again.status_code == 201, "an erased contact is free to register again"


async def test_only_the_member_or_an_operator_erases(members: httpx.AsyncClient) -> None:
    mei, other = await register(members), await register(members)
    refused = await members.delete(f"/v1/members/{mei['id']}", headers=as_member(other))
    assert refused.status_code == 403
    assert await outbox_events(members, "member.erased") == []
    assert (await members.delete(f"/v1/members/{mei['id']}", headers=OPERATOR)).status_code == 204


async def test_an_owner_hands_over_before_erasure(members: httpx.AsyncClient) -> None:
    owner = await register(members)
    await members.post("/v1/communities", json={"name": "Mine"}, headers=as_member(owner))
    response = await members.delete(f"/v1/members/{owner['id']}", headers=as_member(owner))
    assert response.status_code == 409
    assert response.json()["type"].endswith("/owner-must-transfer")
