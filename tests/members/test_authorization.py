"""Who may do what: each role against each members route, contact details included."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from shared.auth import Role
from tests.conftest import auth
from tests.members.conftest import as_member, register

# principal -> (profile, edit, export, list members, community roster, segment preview)
MATRIX: dict[str, tuple[int, int, int, int, int, int]] = {
    "self": (200, 200, 200, 403, 200, 403),
    "other member": (403, 403, 403, 403, 403, 403),
    "community owner": (200, 403, 403, 403, 200, 403),
    "staff moderator of the community": (200, 403, 403, 403, 200, 403),
    "staff moderator elsewhere": (403, 403, 403, 403, 403, 403),
    "operator": (200, 200, 200, 200, 200, 200),
    "partner with members:read": (200, 403, 403, 200, 403, 403),
    "partner without scopes": (403, 403, 403, 403, 403, 403),
}
SEES_CONTACTS = {"self", "operator"}


@pytest.fixture
async def world(members: httpx.AsyncClient) -> dict[str, Any]:
    owner = await register(members)
    fan = await register(members, phone="+8613600136000")
    outsider = await register(members)
    community = (
        await members.post("/v1/communities", json={"name": "Matrix"}, headers=as_member(owner))
    ).json()
    await members.post(
        f"/v1/communities/{community['id']}/members", json={}, headers=as_member(fan)
    )
    return {
        "fan": fan,
        "community": community,
        "principals": {
            "self": as_member(fan),
            "other member": as_member(outsider),
            "community owner": as_member(owner),
            "staff moderator of the community": auth(
                Role.MODERATOR, subject="mod-1", communities=[community["id"]]
            ),
            "staff moderator elsewhere": auth(
                Role.MODERATOR, subject="mod-2", communities=["elsewhere"]
            ),
            "operator": auth(Role.OPERATOR, subject="ops"),
            "partner with members:read": auth(Role.PARTNER, subject="crm", scopes=["members:read"]),
            "partner without scopes": auth(Role.PARTNER, subject="shop"),
        },
    }


@pytest.mark.parametrize("who", sorted(MATRIX))
async def test_authorisation_matrix(
    members: httpx.AsyncClient, world: dict[str, Any], who: str
) -> None:
    fan, community = world["fan"], world["community"]
    headers = world["principals"][who]
    path = f"/v1/members/{fan['id']}"
    got = (
        await members.get(path, headers=headers),
        await members.patch(path, json={"city": "Suzhou"}, headers=headers),
        await members.get(f"{path}/export", headers=headers),
        await members.get("/v1/members", headers=headers),
        await members.get(f"/v1/communities/{community['id']}/members", headers=headers),
        await members.post(
            "/v1/segments/preview",
            json={"rules": {"field": "tier", "values": ["fan"]}},
            headers=headers,
        ),
    )
    assert tuple(r.status_code for r in got) == MATRIX[who], [r.text for r in got]
    profile = got[0]
    if profile.status_code == 200:
        assert ("phone" in profile.json()) is (who in SEES_CONTACTS)
        assert ("13600136000" in profile.text) is (who in SEES_CONTACTS)
    for response in got:
        if response.status_code >= 400:
            assert response.headers["content-type"] == "application/problem+json"
            assert "13600136000" not in response.text


async def test_no_token_is_401_everywhere_but_registration(members: httpx.AsyncClient) -> None:
    for method, path in (
        ("GET", "/v1/members/x"),
        ("PATCH", "/v1/members/x"),
        ("GET", "/v1/members/x/export"),
        ("DELETE", "/v1/members/x"),
        ("GET", "/v1/communities"),
        ("POST", "/v1/communities"),
        ("GET", "/v1/segments"),
    ):
        response = await members.request(method, path, json={})
        assert response.status_code == 401, (method, path, response.status_code)
