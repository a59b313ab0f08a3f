"""Communities: creation, joining and leaving, invite-only groups, roles, counts and events."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from shared.auth import Role
from tests.conftest import auth
from tests.members.conftest import OPERATOR, as_member, outbox_events, register


async def create(client: httpx.AsyncClient, owner: dict[str, Any], **fields: Any) -> dict[str, Any]:
    body = {"name": f"club of {owner['nickname']}", **fields}
    response = await client.post("/v1/communities", json=body, headers=as_member(owner))
    assert response.status_code == 201, response.text
    community: dict[str, Any] = response.json()
    return community


async def test_creating_a_community_makes_the_creator_its_owner(
    members: httpx.AsyncClient,
) -> None:
    owner = await register(members)
    community = await create(members, owner, theme="#ff6600", timezone="Europe/Paris")
    assert community["owner_id"] == owner["id"]
    assert community["member_count"] == 1
    [created] = await outbox_events(members, "community.created")
    assert created.data["timezone"] == "Europe/Paris"
    [joined] = await outbox_events(members, "member.joined_community")
    assert joined.data["role"] == "owner"


async def test_operators_create_communities_for_a_named_owner(members: httpx.AsyncClient) -> None:
    owner = await register(members)
    response = await members.post(
        "/v1/communities", json={"name": "Coffee Lab", "owner_id": owner["id"]}, headers=OPERATOR
    )
    assert response.status_code == 201
    missing = await members.post("/v1/communities", json={"name": "No Owner"}, headers=OPERATOR)
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["field"] == "body.owner_id"


async def test_community_names_are_unique_and_time_zones_real(members: httpx.AsyncClient) -> None:
    owner = await register(members)
    await create(members, owner, name="Tea House")
    again = await members.post(
        "/v1/communities", json={"name": "Tea House"}, headers=as_member(owner)
    )
    assert again.status_code == 409
    bad_zone = await members.post(
        "/v1/communities",
        json={"name": "Moon", "timezone": "Mars/Olympus"},
        headers=as_member(owner),
    )
    assert bad_zone.status_code == 422
    assert bad_zone.json()["errors"][0]["field"] == "body.timezone"


async def test_joining_twice_counts_once_and_leaving_decrements(members: httpx.AsyncClient) -> None:
    owner, fan = await register(members), await register(members)
    community = await create(members, owner)
    path = f"/v1/communities/{community['id']}/members"
    for _ in range(2):
        assert (await members.post(path, json={}, headers=as_member(fan))).status_code == 201
    read = await members.get(f"/v1/communities/{community['id']}", headers=as_member(fan))
    assert read.json()["member_count"] == 2
    assert len(await outbox_events(members, "member.joined_community")) == 2
    left = await members.delete(f"{path}/{fan['id']}", headers=as_member(fan))
    assert left.status_code == 204
    read = await members.get(f"/v1/communities/{community['id']}", headers=as_member(fan))
    assert read.json()["member_count"] == 1
    [event] = await outbox_events(members, "member.left_community")
    assert event.data["member_id"] == fan["id"]


async def test_concurrent_joins_keep_the_count_exact(members: httpx.AsyncClient) -> None:
    owner = await register(members)
    fans = [await register(members) for _ in range(12)]
    community = await create(members, owner)
    path = f"/v1/communities/{community['id']}/members"
    results = await asyncio.gather(
        *(members.post(path, json={}, headers=as_member(f)) for f in fans + fans)
    )
    assert all(r.status_code == 201 for r in results), [r.text for r in results]
    read = await members.get(f"/v1/communities/{community['id']}", headers=OPERATOR)
    assert read.json()["member_count"] == 13


async def test_invite_only_needs_the_code(members: httpx.AsyncClient) -> None:
    owner, fan = await register(members), await register(members)
    community = await create(members, owner, visibility="invite_only")
    path = f"/v1/communities/{community['id']}/members"
    assert (await members.post(path, json={}, headers=as_member(fan))).status_code == 403
    wrong = await members.post(path, json={"invite_code": "WRONGCODE"}, headers=as_member(fan))
    assert wrong.status_code == 422
    code = community["invite_code"]
    joined = await members.post(path, json={"invite_code": code}, headers=as_member(fan))
    assert joined.status_code == 201
    fan_view = await members.get(f"/v1/communities/{community['id']}", headers=as_member(fan))
    assert "invite_code" not in fan_view.json()


async def test_roles_owner_promotes_and_hands_over(members: httpx.AsyncClient) -> None:
    owner, fan, other = await register(members), await register(members), await register(members)
    community = await create(members, owner)
    path = f"/v1/communities/{community['id']}/members"
    for m in (fan, other):
        await members.post(path, json={}, headers=as_member(m))
    by_fan = await members.patch(
        f"{path}/{other['id']}", json={"role": "moderator"}, headers=as_member(fan)
    )
    assert by_fan.status_code == 403
    promoted = await members.patch(
        f"{path}/{fan['id']}", json={"role": "moderator"}, headers=as_member(owner)
    )
    assert promoted.json()["role"] == "moderator"
    # A moderator removes plain members but not the owner.
    removed = await members.delete(f"{path}/{other['id']}", headers=as_member(fan))
    assert removed.status_code == 204
    assert (
        await members.delete(f"{path}/{owner['id']}", headers=as_member(fan))
    ).status_code == 403
    handed = await members.patch(
        f"{path}/{fan['id']}", json={"role": "owner"}, headers=as_member(owner)
    )
    assert handed.status_code == 200
    read = await members.get(f"/v1/communities/{community['id']}", headers=OPERATOR)
    assert read.json()["owner_id"] == fan["id"]
    roles = {
        e.data["member_id"]: e.data["role"]
        for e in await outbox_events(members, "member.role_changed")
    }
    assert roles == {fan["id"]: "owner", owner["id"]: "moderator"}


async def test_the_owner_cannot_just_leave(members: httpx.AsyncClient) -> None:
    owner = await register(members)
    community = await create(members, owner)
    response = await members.delete(
        f"/v1/communities/{community['id']}/members/{owner['id']}", headers=as_member(owner)
    )
    assert response.status_code == 409


async def test_member_lists_are_for_the_communitys_members_and_staff(
    members: httpx.AsyncClient,
) -> None:
    owner, outsider = await register(members), await register(members)
    community = await create(members, owner)
    path = f"/v1/communities/{community['id']}/members"
    assert (await members.get(path, headers=as_member(outsider))).status_code == 403
    listed = await members.get(path, headers=as_member(owner))
    assert [m["member_id"] for m in listed.json()["items"]] == [owner["id"]]
    staff = auth(Role.MODERATOR, subject="mod-1", communities=[community["id"]])
    assert (await members.get(path, headers=staff)).status_code == 200


async def test_unknown_community_is_404_problem(members: httpx.AsyncClient) -> None:
    fan = await register(members)
    response = await members.post("/v1/communities/nope/members", json={}, headers=as_member(fan))
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
