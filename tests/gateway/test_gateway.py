"""The gateway in-process: sign-in, API keys, auth at the edge, rate limits, services down."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from services.gateway.app import create_app
from services.gateway.ratelimit import RedisRateLimiter
from services.gateway.settings import GatewaySettings
from shared.auth import Role
from shared.broker import free_port
from tests.conftest import Databases, auth, running


async def gateway_client(databases: Databases, **overrides: object) -> httpx.AsyncClient:
    nowhere = f"http://127.0.0.1:{free_port()}"  # every upstream is down
    values: dict[str, object] = {
        "database_url": await databases.new("gateway"),
        "log_json": False,
        **{f"{name}_url": nowhere for name in ("members", "content", "analytics")},
    }
    values.update(overrides)
    return create_app(GatewaySettings.model_validate(values), run_background=False)  # type: ignore[return-value]


@pytest.fixture
async def gateway(databases: Databases) -> AsyncIterator[httpx.AsyncClient]:
    async with running(await gateway_client(databases)) as client:  # type: ignore[arg-type]
        yield client


async def sign_in(client: httpx.AsyncClient, password: str = "admin") -> httpx.Response:
    return await client.post("/v1/auth/token", data={"username": "admin", "password": password})


async def test_the_bootstrapped_operator_signs_in(gateway: httpx.AsyncClient) -> None:
    response = await sign_in(gateway)
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600


async def test_a_wrong_password_is_401_problem(gateway: httpx.AsyncClient) -> None:
    response = await sign_in(gateway, "wrong")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/invalid-credentials")


async def test_protected_routes_need_a_credential(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/v1/metrics/overview")
    assert response.status_code == 401
    assert response.json()["status"] == 401
    tampered = await gateway.get(
        "/v1/metrics/overview", headers={"Authorization": "Bearer e30.e30.c2ln"}
    )
    assert tampered.status_code == 401


async def test_an_expired_token_is_refused(gateway: httpx.AsyncClient) -> None:
    from datetime import timedelta

    from shared.auth import Principal, TokenCodec
    from shared.settings import LOCAL_JWT_SECRET

    token = TokenCodec(LOCAL_JWT_SECRET).issue(
        Principal("x", Role.OPERATOR), ttl=timedelta(seconds=-5)
    )
    response = await gateway.get("/v1/api-keys", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


async def test_a_stopped_service_gives_503_problem_not_a_hang(gateway: httpx.AsyncClient) -> None:
    response = await gateway.post("/v1/members", json={"nickname": "Ann"})
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert "members" in response.json()["detail"]
    assert response.headers["retry-after"] == "1"


async def test_unknown_paths_are_404_problem(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/v1/nothing-here", headers=auth(Role.OPERATOR))
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_api_keys_are_for_operators_and_shown_once(gateway: httpx.AsyncClient) -> None:
    token = (await sign_in(gateway)).json()["access_token"]
    operator = {"Authorization": f"Bearer {token}"}
    created = await gateway.post(
        "/v1/api-keys", json={"name": "CRM", "scopes": ["members:read"]}, headers=operator
    )
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    assert key.startswith("ck_")
    listed = (await gateway.get("/v1/api-keys", headers=operator)).json()["items"]
    assert [k["name"] for k in listed] == ["CRM"]
    assert "key" not in listed[0]
    as_member = await gateway.get("/v1/api-keys", headers=auth(Role.MEMBER))
    assert as_member.status_code == 403
    as_partner = await gateway.get("/v1/api-keys", headers={"X-API-Key": key})
    assert as_partner.status_code == 403
    revoked = await gateway.delete(f"/v1/api-keys/{created.json()['id']}", headers=operator)
    assert revoked.json()["revoked_at"] is not None
    after = await gateway.get("/v1/api-keys", headers={"X-API-Key": key})
    assert after.status_code == 401


async def test_api_key_scopes_are_validated(gateway: httpx.AsyncClient) -> None:
    response = await gateway.post(
        "/v1/api-keys",
        json={"name": "CRM", "scopes": ["members:delete-everything"]},
        headers=auth(Role.OPERATOR),
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body.scopes.0"


async def test_rate_limit_answers_429_with_retry_after(databases: Databases) -> None:
    app = await gateway_client(databases, rate_limit_per_min=3)
    async with running(app) as client:  # type: ignore[arg-type]
        headers = auth(Role.OPERATOR, subject="busy-operator")
        statuses = [
            (await client.get("/v1/api-keys", headers=headers)).status_code for _ in range(4)
        ]
        assert statuses == [200, 200, 200, 429]
        limited = await client.get("/v1/api-keys", headers=headers)
        assert limited.headers["content-type"] == "application/problem+json"
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        other = await client.get("/v1/api-keys", headers=auth(Role.OPERATOR))
        assert other.status_code == 200  # limits are per principal


async def test_redis_rate_limits_are_shared_between_limiters() -> None:
    key = f"test-{uuid.uuid4()}"
    first, second = (
        RedisRateLimiter("redis://127.0.0.1:6379/0"),
        RedisRateLimiter("redis://127.0.0.1:6379/0"),
    )
    try:
        assert await first.hit(key, 2) is None
        assert await second.hit(key, 2) is None
        retry_after = await first.hit(key, 2)
        assert retry_after is not None
        assert 1 <= retry_after <= 60
    finally:
        await first.close()
        await second.close()


async def test_guessing_tokens_is_rate_limited_by_address(databases: Databases) -> None:
    app = await gateway_client(databases, anonymous_rate_limit_per_min=3)
    async with running(app) as client:  # type: ignore[arg-type]
        statuses = [
            (await client.get("/v1/api-keys", headers={"X-API-Key": f"ck_guess_{n}"})).status_code
            for n in range(4)
        ]
    assert statuses == [401, 401, 401, 429]
