"""Registration: the first real route, its errors, its event and its idempotency."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from services.members.app import create_app
from services.members.settings import MembersSettings
from shared import idempotency
from shared.app import ServiceRuntime
from shared.auth import Role
from shared.db import outbox_table
from shared.events.envelope import CloudEvent
from tests.conftest import Databases, auth, running

ALICE = {"nickname": "Alice", "channel": "wechat", "region": "CN-31", "email": "Alice@Example.com"}


@pytest.fixture
async def members(databases: Databases) -> AsyncIterator[httpx.AsyncClient]:
    settings = MembersSettings.model_validate(
        {"database_url": await databases.new("members"), "log_json": False}
    )
    app = create_app(settings, run_background=False)
    async with running(app) as client:
        client.app_runtime = app.state.runtime  # type: ignore[attr-defined]
        yield client


def runtime_of(client: httpx.AsyncClient) -> ServiceRuntime:
    runtime: ServiceRuntime = client.app_runtime  # type: ignore[attr-defined]
    return runtime


async def outbox_events(client: httpx.AsyncClient) -> list[CloudEvent]:
    async with runtime_of(client).db.session() as session:
        rows = (await session.execute(select(outbox_table.c.payload))).scalars().all()
    return [CloudEvent.from_json(row) for row in rows]


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


async def test_idempotency_key_still_in_flight_is_409(members: httpx.AsyncClient) -> None:
    body = b'{"nickname": "Carol"}'
    fingerprint = idempotency.request_hash("POST", "/v1/members", "", body)
    claim = await idempotency.begin(
        runtime_of(members).db,
        key="signup-3",
        owner="anonymous",
        fingerprint=fingerprint,
        ttl=timedelta(hours=24),
    )
    assert isinstance(claim, idempotency.Claim)
    response = await members.post(
        "/v1/members",
        content=body,
        headers={"Idempotency-Key": "signup-3", "content-type": "application/json"},
    )
    assert response.status_code == 409
    assert await outbox_events(members) == []


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
    assert "email" not in as_other.json()
    assert as_self.json()["email"] == as_operator.json()["email"] == "alice@example.com"


async def test_a_forged_token_is_refused(members: httpx.AsyncClient) -> None:
    response = await members.get("/v1/members/x", headers={"Authorization": "Bearer not.a.jwt"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_timestamps_read_back_from_the_database_are_utc(members: httpx.AsyncClient) -> None:
    member = (await members.post("/v1/members", json=ALICE)).json()
    read = (await members.get(f"/v1/members/{member['id']}")).json()
    assert read["created_at"] == member["created_at"]
    assert read["created_at"].endswith("Z")
