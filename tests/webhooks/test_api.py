"""Endpoints and the delivery log over HTTP: validation, secrets, ownership, scopes, paging."""

from __future__ import annotations

import base64

from shared.auth import Role
from tests.conftest import auth
from tests.webhooks.conftest import OPERATOR, Webhooks

PATH = "/v1/webhooks/endpoints"
PUBLIC = "https://93.184.215.14/hooks"


def partner(name: str, *scopes: str) -> dict[str, str]:
    return auth(Role.PARTNER, subject=f"apikey:{name}", scopes=frozenset(scopes))


async def test_an_endpoint_gets_a_standard_webhooks_secret_shown_only_on_create(
    webhooks: Webhooks,
) -> None:
    created = await webhooks.endpoint(PUBLIC, ["member.*", "post.published"], description="CRM")
    secret = created["secret"]
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) >= 24
    assert created["event_types"] == ["member.*", "post.published"]
    got = await webhooks.client.get(f"{PATH}/{created['id']}", headers=OPERATOR)
    assert got.status_code == 200
    assert "secret" not in got.json()
    listed = await webhooks.client.get(PATH, headers=OPERATOR)
    assert "secret" not in listed.json()["items"][0]


async def test_event_types_must_exist_or_match_by_wildcard(webhooks: Webhooks) -> None:
    for bad in (["member.invented"], ["nothing.*"], ["mem*"], ["*.registered"], []):
        response = await webhooks.client.post(
            PATH, json={"url": PUBLIC, "event_types": bad}, headers=OPERATOR
        )
        assert response.status_code == 422, bad
        assert response.json()["errors"][0]["field"] == "body.event_types"
    for good in (["*"], ["member.*"], ["points.earned", "coupon.*"]):
        response = await webhooks.client.post(
            PATH, json={"url": PUBLIC, "event_types": good}, headers=OPERATOR
        )
        assert response.status_code == 201, response.text


async def test_unknown_fields_and_bad_urls_are_422(webhooks: Webhooks) -> None:
    extra = await webhooks.client.post(
        PATH, json={"url": PUBLIC, "event_types": ["*"], "secret": "mine"}, headers=OPERATOR
    )
    assert extra.status_code == 422
    for url in ("not a url", "ftp://93.184.215.14/x", "https:///nohost"):
        response = await webhooks.client.post(
            PATH, json={"url": url, "event_types": ["*"]}, headers=OPERATOR
        )
        assert response.status_code == 422, url
        assert response.json()["errors"][0]["field"] == "body.url"


async def test_partners_need_the_webhooks_write_scope_and_members_are_refused(
    webhooks: Webhooks,
) -> None:
    body = {"url": PUBLIC, "event_types": ["member.*"]}
    reader = partner("r", "webhooks:read", "events:*")
    assert (await webhooks.client.post(PATH, json=body, headers=reader)).status_code == 403
    assert (await webhooks.client.get(PATH, headers=reader)).status_code == 200
    assert (
        await webhooks.client.get(PATH, headers=partner("x", "members:read"))
    ).status_code == 403
    assert (await webhooks.client.get(PATH, headers=auth(Role.MEMBER))).status_code == 403
    assert (await webhooks.client.get(PATH)).status_code == 401


async def test_a_partner_subscribes_only_to_event_types_its_key_covers(webhooks: Webhooks) -> None:
    crm = partner("crm", "webhooks:write", "events:member.*")
    inside = await webhooks.client.post(
        PATH, json={"url": PUBLIC, "event_types": ["member.registered", "member.*"]}, headers=crm
    )
    assert inside.status_code == 201, inside.text
    for outside in (["post.published"], ["*"], ["member.*", "points.*"]):
        response = await webhooks.client.post(
            PATH, json={"url": PUBLIC, "event_types": outside}, headers=crm
        )
        assert response.status_code == 403, outside
    widen = await webhooks.client.patch(
        f"{PATH}/{inside.json()['id']}", json={"event_types": ["*"]}, headers=crm
    )
    assert widen.status_code == 403


async def test_a_partner_sees_and_changes_only_its_own_endpoints(webhooks: Webhooks) -> None:
    crm = partner("crm", "webhooks:write", "events:*")
    shop = partner("shop", "webhooks:write", "events:*")
    mine = await webhooks.endpoint(PUBLIC, ["*"], headers=crm)
    theirs = await webhooks.endpoint(PUBLIC, ["*"], headers=shop)
    assert mine["owner"] == "apikey:crm"
    listed = (await webhooks.client.get(PATH, headers=crm)).json()["items"]
    assert [e["id"] for e in listed] == [mine["id"]]
    other = f"{PATH}/{theirs['id']}"
    assert (await webhooks.client.get(other, headers=crm)).status_code == 404
    assert (await webhooks.client.delete(other, headers=crm)).status_code == 404
    assert (await webhooks.client.post(f"{other}/rotate-secret", headers=crm)).status_code == 404
    assert (await webhooks.client.post(f"{other}/test", headers=crm)).status_code == 404
    assert (
        await webhooks.client.get(
            "/v1/webhooks/deliveries", params={"endpoint_id": theirs["id"]}, headers=crm
        )
    ).status_code == 404
    everything = (await webhooks.client.get(PATH, headers=OPERATOR)).json()["items"]
    assert len(everything) == 2


async def test_a_partner_delivery_log_holds_only_its_own_deliveries(webhooks: Webhooks) -> None:
    crm = partner("crm", "webhooks:write", "events:*")
    mine = await webhooks.endpoint(PUBLIC, ["*"], headers=crm)
    await webhooks.endpoint(PUBLIC, ["*"])
    await webhooks.publish("member.registered", {"member_id": "m1"})
    own = await webhooks.client.get("/v1/webhooks/deliveries", headers=crm)
    assert [d["endpoint_id"] for d in own.json()["items"]] == [mine["id"]]
    assert len(await webhooks.deliveries()) == 2
    other = next(d for d in await webhooks.deliveries() if d["endpoint_id"] != mine["id"])
    hidden = await webhooks.client.get(f"/v1/webhooks/deliveries/{other['id']}", headers=crm)
    assert hidden.status_code == 404


async def test_endpoints_and_deliveries_page_with_cursors(webhooks: Webhooks) -> None:
    for _ in range(5):
        await webhooks.endpoint(PUBLIC, ["member.registered"])
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await webhooks.client.get(PATH, params=params, headers=OPERATOR)).json()
        seen += [e["id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 5
    for n in range(3):
        await webhooks.publish("member.registered", {"member_id": f"m{n}"})
    assert len(await webhooks.deliveries(limit=200)) == 15
    page = (
        await webhooks.client.get("/v1/webhooks/deliveries", params={"limit": 10}, headers=OPERATOR)
    ).json()
    rest = (
        await webhooks.client.get(
            "/v1/webhooks/deliveries",
            params={"limit": 10, "cursor": page["next_cursor"]},
            headers=OPERATOR,
        )
    ).json()
    assert len(rest["items"]) == 5
    assert rest["next_cursor"] is None
    bad = await webhooks.client.get(PATH, params={"cursor": "!!"}, headers=OPERATOR)
    assert bad.status_code == 422


async def test_deleting_an_endpoint_removes_it_and_its_log(webhooks: Webhooks) -> None:
    endpoint = await webhooks.endpoint(PUBLIC)
    await webhooks.publish("member.registered", {"member_id": "m1"})
    deleted = await webhooks.client.delete(f"{PATH}/{endpoint['id']}", headers=OPERATOR)
    assert deleted.status_code == 204
    assert (
        await webhooks.client.get(f"{PATH}/{endpoint['id']}", headers=OPERATOR)
    ).status_code == 404
    assert await webhooks.deliveries() == []
