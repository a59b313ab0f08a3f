"""Registration: the first real route, its errors, its event and its idempotency."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, text
from starlette.responses import Response

from services.members.models import Member
from shared import idempotency
from shared.auth import Role
from tests.conftest import auth
from tests.members.conftest import OPERATOR, as_member, outbox_events, register, runtime_of

ALICE = {
    "nickname": "Alice",
    "channel": "wechat",
    "country": "CN",
    "province": "CN-SH",
    "city": "Shanghai",
    "email": "Alice@Example.com",
}


async def test_registration_stores_the_member_and_its_event_together(
    members: httpx.AsyncClient,
) -> None:
    response = await members.post("/v1/members", json=ALICE)
    assert response.status_code == 201, response.text
    member = response.json()
    assert response.headers["location"] == f"/v1/members/{member['id']}"
    assert member["nickname"] == "Alice"
    assert member["email"] == "alice@example.com"
    [event] = await outbox_events(members)
    assert event.type == "member.registered"
    assert event.subject == member["id"]
    assert event.data["member_id"] == member["id"]
    assert event.source == "/services/members"


async def test_invalid_registration_is_a_problem_naming_the_field_and_writes_nothing(
    members: httpx.AsyncClient,
) -> None:
    response = await members.post("/v1/members", json={"nickname": "", "channel": "fax"})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422
    fields = {error["field"] for error in problem["errors"]}
    assert fields == {"body.nickname", "body.channel"}
    assert await outbox_events(members) == []


async def test_malformed_json_is_a_4xx_problem(members: httpx.AsyncClient) -> None:
    response = await members.post(
        "/v1/members", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


async def test_registering_the_same_email_twice_is_a_conflict(members: httpx.AsyncClient) -> None:
    assert (await members.post("/v1/members", json=ALICE)).status_code == 201
    again = await members.post("/v1/members", json={**ALICE, "email": "alice@example.com"})
    assert again.status_code == 409
    assert again.json()["type"].endswith("/contact-already-registered")
    assert len(await outbox_events(members)) == 1


async def test_same_idempotency_key_and_body_replays_the_first_response(
    members: httpx.AsyncClient,
) -> None:
    headers = {"Idempotency-Key": "signup-1"}
    first = await members.post("/v1/members", json=ALICE, headers=headers)
    second = await members.post("/v1/members", json=ALICE, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert second.headers["location"] == first.headers["location"]
    assert len(await outbox_events(members)) == 1


async def test_same_idempotency_key_with_another_body_is_422(members: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "signup-2"}
    assert (await members.post("/v1/members", json=ALICE, headers=headers)).status_code == 201
    other = await members.post("/v1/members", json={"nickname": "Bob"}, headers=headers)
    assert other.status_code == 422
    assert "different request" in other.json()["detail"]


async def test_a_request_whose_key_is_in_flight_waits_and_replays_the_first(
    members: httpx.AsyncClient,
) -> None:
    body = b'{"nickname": "Carol"}'
    fingerprint = idempotency.request_hash("POST", "/v1/members", "", body)
    headers = {"Idempotency-Key": "signup-3", "content-type": "application/json"}
    async with runtime_of(members).db.session() as first:
        claim = await idempotency.begin(
            first,
            key="signup-3",
            owner="anonymous",
            fingerprint=fingerprint,
            ttl=timedelta(hours=24),
        )
        assert isinstance(claim, idempotency.Claim)
        second = asyncio.create_task(members.post("/v1/members", content=body, headers=headers))
        await asyncio.sleep(0.3)
        assert not second.done()  # held by the first request's open transaction
        stored = Response(
            content=b'{"id": "first"}', status_code=201, media_type="application/json"
        )
        await idempotency.complete(first, claim, stored)
    response = await second
    assert response.status_code == 201
    assert response.json() == {"id": "first"}
    assert response.headers["idempotent-replayed"] == "true"
    assert await outbox_events(members) == []


async def test_a_key_committed_unfinished_by_a_saga_step_answers_409(
    members: httpx.AsyncClient,
) -> None:
    body = b'{"nickname": "Dan"}'
    fingerprint = idempotency.request_hash("POST", "/v1/members", "", body)
    async with runtime_of(members).db.session() as first:  # commits the claim unfinished
        claim = await idempotency.begin(
            first,
            key="signup-6",
            owner="anonymous",
            fingerprint=fingerprint,
            ttl=timedelta(hours=24),
        )
        assert isinstance(claim, idempotency.Claim)
    headers = {"Idempotency-Key": "signup-6", "content-type": "application/json"}
    response = await members.post("/v1/members", content=body, headers=headers)
    assert response.status_code == 409
    assert "still being processed" in response.json()["detail"]
    assert await outbox_events(members) == []


async def test_concurrent_requests_with_one_key_register_once(members: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "signup-5"}
    replies = await asyncio.gather(
        *(members.post("/v1/members", json=ALICE, headers=headers) for _ in range(8))
    )
    assert [r.status_code for r in replies] == [201] * 8
    assert len({r.json()["id"] for r in replies}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in replies) == 7
    assert len(await outbox_events(members)) == 1


async def test_a_failed_request_frees_its_idempotency_key(members: httpx.AsyncClient) -> None:
    assert (await members.post("/v1/members", json=ALICE)).status_code == 201
    headers = {"Idempotency-Key": "signup-4"}
    clash = {**ALICE, "nickname": "Alice again"}
    assert (await members.post("/v1/members", json=clash, headers=headers)).status_code == 409
    fixed = {**clash, "email": "alice2@example.com"}
    assert (await members.post("/v1/members", json=fixed, headers=headers)).status_code == 201


async def test_contact_details_are_for_the_member_and_operators_only(
    members: httpx.AsyncClient,
) -> None:
    member = (await members.post("/v1/members", json=ALICE)).json()
    path = f"/v1/members/{member['id']}"
    as_other = await members.get(path, headers=auth(Role.MEMBER))
    as_self = await members.get(path, headers=auth(Role.MEMBER, subject=member["id"]))
    as_operator = await members.get(path, headers=auth(Role.OPERATOR))
    assert as_other.status_code == 403
    assert "alice" not in as_other.text.lower()
    assert as_self.json()["email"] == as_operator.json()["email"] == "alice@example.com"


async def test_a_forged_token_is_refused(members: httpx.AsyncClient) -> None:
    response = await members.get("/v1/members/x", headers={"Authorization": "Bearer not.a.jwt"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_timestamps_read_back_from_the_database_are_utc(members: httpx.AsyncClient) -> None:
    member = (await members.post("/v1/members", json=ALICE)).json()
    read = (await members.get(f"/v1/members/{member['id']}", headers=auth(Role.OPERATOR))).json()
    assert read["created_at"] == member["created_at"]
    assert read["created_at"].endswith("Z")


async def test_contacts_are_ciphertext_at_rest(members: httpx.AsyncClient) -> None:
    await register(members, email="secret@example.com", phone="+86 138 0013 8000")
    async with runtime_of(members).db.session() as session:
        rows = (await session.execute(text("SELECT * FROM members"))).mappings().all()
    dumped = repr([dict(r) for r in rows])
    assert "secret@example.com" not in dumped
    assert "13800138000" not in dumped


async def test_the_same_phone_written_differently_is_a_duplicate(
    members: httpx.AsyncClient,
) -> None:
    await register(members, phone="+86 138-0013-8000")
    again = await members.post(
        "/v1/members", json={"nickname": "twin", "phone": "13800138000", "country": "CN"}
    )
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"phone": "12345"}, "body.phone"),
        ({"phone": "+1 202 555 01"}, "body.phone"),
        ({"email": "not-an-email"}, "body.email"),
        ({"interests": ["knitting-with-cats"]}, "body.interests"),
        ({"country": "XX"}, "body.country"),
        ({"country": "CN", "province": "US-CA"}, "body.province"),
        ({"province": "CN-SH"}, "body.province"),
        ({"birth_year": 2999}, "body.birth_year"),
        ({"nickname": "x" * 65}, "body.nickname"),
        ({"avatar_url": "javascript:alert(1)"}, "body.avatar_url"),
        ({"password": "short", "email": "p@example.com"}, "body.password"),
        ({"password": "long enough pass"}, "body"),
        ({"invite_code": "NOSUCHCODE"}, "body.invite_code"),
        ({"is_admin": True}, "body.is_admin"),
    ],
)
async def test_bad_registration_names_the_field_and_writes_nothing(
    members: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    response = await members.post("/v1/members", json={"nickname": "ok", **body})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    fields = [error["field"] for error in response.json()["errors"]]
    assert field in fields, fields
    async with runtime_of(members).db.session() as session:
        assert (await session.scalars(select(Member.id))).all() == []
    assert await outbox_events(members) == []


async def test_the_profile_shows_age_band_and_region(members: httpx.AsyncClient) -> None:
    member = await register(
        members,
        birth_year=2000,
        gender="female",
        interests=["tea", "coffee", "tea"],
        **{"country": "CN", "province": "CN-ZJ", "city": "Hangzhou"},
    )
    assert member["interests"] == ["coffee", "tea"]
    assert member["age_band"] in ("25-34", "18-24")
    assert member["province"] == "CN-ZJ"
    [event] = await outbox_events(members, "member.registered")
    assert event.data["region"] == "Hangzhou"
    assert "email" not in event.data


async def test_editing_the_profile_announces_what_changed(members: httpx.AsyncClient) -> None:
    member = await register(members)
    response = await members.patch(
        f"/v1/members/{member['id']}",
        json={"nickname": "renamed", "interests": ["music"], "marketing_consent": True},
        headers=as_member(member),
    )
    assert response.status_code == 200, response.text
    assert response.json()["marketing_consent"] is True
    [updated] = await outbox_events(members, "member.profile_updated")
    assert sorted(updated.data["changed"]) == ["interests", "nickname"]
    [consent] = await outbox_events(members, "member.consent_changed")
    assert consent.data["marketing_consent"] is True
    assert consent.data["source"] == "profile"


async def test_a_member_cannot_edit_another(members: httpx.AsyncClient) -> None:
    alice, bob = await register(members), await register(members)
    response = await members.patch(
        f"/v1/members/{alice['id']}", json={"nickname": "hacked"}, headers=as_member(bob)
    )
    assert response.status_code == 403
    again = await members.get(f"/v1/members/{alice['id']}", headers=as_member(alice))
    assert again.json()["nickname"] == alice["nickname"]


async def test_taking_another_members_email_on_edit_is_a_conflict(
    members: httpx.AsyncClient,
) -> None:
    alice, bob = await register(members), await register(members)
    response = await members.patch(
        f"/v1/members/{bob['id']}", json={"email": alice["email"]}, headers=as_member(bob)
    )
    assert response.status_code == 409


GATEWAY = auth(Role.PARTNER, subject="gateway", scopes=["members:authenticate"])


async def test_members_sign_in_with_email_or_phone(members: httpx.AsyncClient) -> None:
    member = await register(members, phone="+8613900139000", password="correct horse")
    for username in (member["email"].upper(), "139 0013 9000", "+8613900139000"):
        response = await members.post(
            "/internal/v1/members/authenticate",
            json={"username": username, "password": "correct horse"},
            headers=GATEWAY,
        )
        assert response.status_code == 200, (username, response.text)
        assert response.json()["member_id"] == member["id"]
    wrong = await members.post(
        "/internal/v1/members/authenticate",
        json={"username": member["email"], "password": "wrong horse"},
        headers=GATEWAY,
    )
    assert wrong.status_code == 401


async def test_only_the_gateway_may_check_passwords(members: httpx.AsyncClient) -> None:
    member = await register(members, password="correct horse")
    body = {"username": member["email"], "password": "correct horse"}
    for headers in (OPERATOR, as_member(member), auth(Role.PARTNER, scopes=["members:read"])):
        response = await members.post(
            "/internal/v1/members/authenticate", json=body, headers=headers
        )
        assert response.status_code == 403


async def test_null_clears_optional_fields_and_is_refused_for_required_ones(
    members: httpx.AsyncClient,
) -> None:
    member = await register(members, interests=["tea"], birth_year=1990)
    path, headers = f"/v1/members/{member['id']}", as_member(member)
    cleared = await members.patch(
        path, json={"interests": None, "birth_year": None}, headers=headers
    )
    assert cleared.status_code == 200, cleared.text
    assert (cleared.json()["interests"], cleared.json()["birth_year"]) == ([], None)
    for field in ("nickname", "password", "marketing_consent"):
        refused = await members.patch(path, json={field: None}, headers=headers)
        assert refused.status_code == 422
        assert refused.json()["errors"][0]["field"] == f"body.{field}"
