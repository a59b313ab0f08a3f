"""Partner API keys at the gateway: shown once, hashed, last use, rotation overlap, scopes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from services.gateway.app import create_app
from services.gateway.models import ApiKey
from services.gateway.settings import GatewaySettings
from shared.app import ServiceRuntime
from shared.auth import Role, hash_api_key
from shared.broker import free_port
from shared.db import utcnow
from tests.conftest import Databases, auth, running

OPERATOR = auth(Role.OPERATOR, subject="ops-1", name="ops")


@pytest.fixture
async def app(databases: Databases) -> FastAPI:
    nowhere = f"http://127.0.0.1:{free_port()}"
    settings = GatewaySettings.model_validate(
        {
            "database_url": await databases.new("gateway"),
            "log_json": False,
            **{f"{name}_url": nowhere for name in ("members", "webhooks")},
        }
    )
    return create_app(settings, run_background=False)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with running(app) as client:
        yield client


def runtime(app: FastAPI) -> ServiceRuntime:
    rt: ServiceRuntime = app.state.runtime
    return rt


async def create_key(client: httpx.AsyncClient, scopes: list[str]) -> dict[str, Any]:
    response = await client.post(
        "/v1/api-keys", json={"name": "CRM", "scopes": scopes}, headers=OPERATOR
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def status_with_key(client: httpx.AsyncClient, key: str) -> int:
    """Authenticates with the key; 403 means "known key, but no right to list keys"."""
    return (await client.get("/v1/api-keys", headers={"X-API-Key": key})).status_code


async def stored(app: FastAPI, key_id: str) -> ApiKey:
    async with runtime(app).db.session() as session:
        record = await session.scalar(select(ApiKey).where(ApiKey.id == key_id))
        assert record is not None
        return record


async def test_a_key_is_shown_once_and_only_its_hash_is_stored(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    created = await create_key(client, ["members:read"])
    record = await stored(app, created["id"])
    assert record.key_hash == hash_api_key(created["key"])
    assert created["key"] not in {record.key_hash, record.prefix}
    listed = (await client.get("/v1/api-keys", headers=OPERATOR)).json()["items"]
    assert "key" not in listed[0]


async def test_using_a_key_records_its_last_use_at_most_once_a_minute(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    created = await create_key(client, ["members:read"])
    assert created["last_used_at"] is None
    assert await status_with_key(client, created["key"]) == 403
    first = (await stored(app, created["id"])).last_used_at
    assert first is not None
    assert await status_with_key(client, created["key"]) == 403
    assert (await stored(app, created["id"])).last_used_at == first  # throttled: no write
    long_ago = utcnow() - timedelta(minutes=5)
    async with runtime(app).db.session() as session:
        await session.execute(
            update(ApiKey).where(ApiKey.id == created["id"]).values(last_used_at=long_ago)
        )
    assert await status_with_key(client, created["key"]) == 403
    latest = (await stored(app, created["id"])).last_used_at
    assert latest is not None
    assert latest > long_ago


async def test_rotation_keeps_the_old_key_valid_for_the_overlap_then_refuses_it(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    created = await create_key(client, ["members:read"])
    rotated = await client.post(
        f"/v1/api-keys/{created['id']}/rotate", json={"overlap_s": 3600}, headers=OPERATOR
    )
    assert rotated.status_code == 200, rotated.text
    body = rotated.json()
    assert body["key"] != created["key"]
    assert body["id"] == created["id"]
    assert body["scopes"] == created["scopes"]
    assert body["previous_expires_at"] is not None
    assert await status_with_key(client, body["key"]) == 403
    assert await status_with_key(client, created["key"]) == 403  # still in the overlap
    async with runtime(app).db.session() as session:
        await session.execute(
            update(ApiKey)
            .where(ApiKey.id == created["id"])
            .values(previous_expires_at=utcnow() - timedelta(seconds=1))
        )
    assert await status_with_key(client, created["key"]) == 401
    assert await status_with_key(client, body["key"]) == 403


async def test_rotation_without_overlap_refuses_the_old_key_at_once(
    client: httpx.AsyncClient,
) -> None:
    created = await create_key(client, ["members:read"])
    rotated = await client.post(
        f"/v1/api-keys/{created['id']}/rotate", json={"overlap_s": 0}, headers=OPERATOR
    )
    assert rotated.status_code == 200
    assert await status_with_key(client, created["key"]) == 401
    assert await status_with_key(client, rotated.json()["key"]) == 403


async def test_a_second_rotation_ends_the_first_overlap(client: httpx.AsyncClient) -> None:
    created = await create_key(client, ["members:read"])
    path = f"/v1/api-keys/{created['id']}/rotate"
    second = (await client.post(path, json={"overlap_s": 600}, headers=OPERATOR)).json()
    third = (await client.post(path, json={"overlap_s": 600}, headers=OPERATOR)).json()
    assert await status_with_key(client, created["key"]) == 401
    assert await status_with_key(client, second["key"]) == 403
    assert await status_with_key(client, third["key"]) == 403


async def test_a_revoked_key_is_refused_even_within_a_rotation_overlap(
    client: httpx.AsyncClient,
) -> None:
    created = await create_key(client, ["members:read"])
    rotated = (
        await client.post(
            f"/v1/api-keys/{created['id']}/rotate", json={"overlap_s": 3600}, headers=OPERATOR
        )
    ).json()
    revoked = await client.delete(f"/v1/api-keys/{created['id']}", headers=OPERATOR)
    assert revoked.status_code == 200
    assert await status_with_key(client, created["key"]) == 401
    assert await status_with_key(client, rotated["key"]) == 401
    again = await client.post(f"/v1/api-keys/{created['id']}/rotate", headers=OPERATOR)
    assert again.status_code == 409


async def test_a_key_cannot_manage_keys_whatever_its_scopes(client: httpx.AsyncClient) -> None:
    created = await create_key(client, ["*"])
    key = {"X-API-Key": created["key"]}
    wider = await client.post(
        "/v1/api-keys", json={"name": "escalate", "scopes": ["*"]}, headers=key
    )
    assert wider.status_code == 403
    as_bearer = await client.post(
        "/v1/api-keys",
        json={"name": "escalate", "scopes": ["*"]},
        headers={"Authorization": f"Bearer {created['key']}"},
    )
    assert as_bearer.status_code == 403
    assert (
        await client.post(f"/v1/api-keys/{created['id']}/rotate", headers=key)
    ).status_code == 403
    assert (await client.delete(f"/v1/api-keys/{created['id']}", headers=key)).status_code == 403
    partner_token = auth(Role.PARTNER, scopes=frozenset({"*"}))
    listed = await client.get("/v1/api-keys", headers=partner_token)
    assert listed.status_code == 403
    keys = (await client.get("/v1/api-keys", headers=OPERATOR)).json()["items"]
    assert len(keys) == 1


@pytest.mark.parametrize(
    "scope",
    [
        "members:read webhooks:write",
        "members:read,webhooks:write",
        "*:*",
        "members:*:write",
        "MEMBERS:READ",
        "members:admin",
        "events:../members",
        "events:member.*.x",
        "events:nothing.*",
        "events:member.invented",
        "events:read",
        "events:*.registered",
        "members :read",
        "\uff4dembers:read",  # a full-width m
    ],
)
async def test_scope_escape_attempts_are_refused(client: httpx.AsyncClient, scope: str) -> None:
    response = await client.post(
        "/v1/api-keys", json={"name": "CRM", "scopes": [scope]}, headers=OPERATOR
    )
    assert response.status_code == 422, scope
    assert response.json()["errors"][0]["field"].startswith("body.scopes")


async def test_event_type_scopes_name_registered_events(client: httpx.AsyncClient) -> None:
    created = await create_key(
        client, ["events:member.*", "events:post.published", "events:*", "webhooks:write"]
    )
    assert sorted(created["scopes"]) == sorted(
        ["events:member.*", "events:post.published", "events:*", "webhooks:write"]
    )


async def test_unknown_keys_and_tampered_keys_are_401(client: httpx.AsyncClient) -> None:
    created = await create_key(client, ["members:read"])
    tampered = created["key"][:-2] + ("AA" if not created["key"].endswith("AA") else "BB")
    assert await status_with_key(client, tampered) == 401
    assert await status_with_key(client, "ck_nothing") == 401
