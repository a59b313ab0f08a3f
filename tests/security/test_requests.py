"""Hostile requests against a real service: forged tokens, oversize bodies, injection."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import jwt
import pytest

from services.members.app import create_app
from services.members.settings import MembersSettings
from shared.auth import ALGORITHM, AUDIENCE, ISSUER, Principal, Role, TokenCodec
from shared.settings import LOCAL_JWT_SECRET
from tests.conftest import Databases, auth, running


@pytest.fixture
async def service(databases: Databases) -> AsyncIterator[httpx.AsyncClient]:
    settings = MembersSettings.model_validate(
        {"database_url": await databases.new("sec"), "log_json": False, "max_body_bytes": 4096}
    )
    async with running(create_app(settings, run_background=False)) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    base: dict[str, object] = {
        "iss": ISSUER, "aud": AUDIENCE, "sub": "ops", "role": "operator",
        "iat": now, "nbf": now, "exp": now + 600,
    }  # fmt: skip
    return base | overrides


def forged_tokens() -> dict[str, str]:
    good = jwt.encode(claims(role="member"), LOCAL_JWT_SECRET, algorithm=ALGORITHM)
    head, _, signature = good.split(".")
    elevated = base64.urlsafe_b64encode(json.dumps(claims()).encode()).decode().rstrip("=")
    none_header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').decode().rstrip("=")
    return {
        "payload swapped to operator": f"{head}.{elevated}.{signature}",
        "alg none": f"{none_header}.{elevated}.",
        "other secret": jwt.encode(claims(), "x" * 48, algorithm=ALGORITHM),
        "expired": jwt.encode(claims(exp=1), LOCAL_JWT_SECRET, algorithm=ALGORITHM),
        "wrong audience": jwt.encode(
            claims(aud="elsewhere"), LOCAL_JWT_SECRET, algorithm=ALGORITHM
        ),
        "wrong issuer": jwt.encode(claims(iss="mallory"), LOCAL_JWT_SECRET, algorithm=ALGORITHM),
        "unknown role": jwt.encode(claims(role="root"), LOCAL_JWT_SECRET, algorithm=ALGORITHM),
        "not yet valid": jwt.encode(
            claims(nbf=4_000_000_000), LOCAL_JWT_SECRET, algorithm=ALGORITHM
        ),
        "garbage": "a.b.c",
    }


@pytest.mark.parametrize("name", sorted(forged_tokens()))
async def test_forged_and_stale_tokens_are_401(service: httpx.AsyncClient, name: str) -> None:
    response = await service.get("/v1/members", headers=bearer(forged_tokens()[name]))
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_token_past_its_ttl_is_refused(service: httpx.AsyncClient) -> None:
    codec = TokenCodec(LOCAL_JWT_SECRET)
    stale = codec.issue(Principal("ops", Role.OPERATOR), ttl=timedelta(seconds=-5))
    assert (await service.get("/v1/members", headers=bearer(stale))).status_code == 401
    fresh = codec.issue(Principal("ops", Role.OPERATOR))
    assert (await service.get("/v1/members", headers=bearer(fresh))).status_code == 200


async def test_an_oversize_body_is_413_by_length(service: httpx.AsyncClient) -> None:
    body = json.dumps({"nickname": "x", "city": "y" * 10_000})
    response = await service.post(
        "/v1/members", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


async def test_an_oversize_streamed_body_is_413(service: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"nickname": "x", "city": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}'

    response = await service.post(
        "/v1/members", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    listed = await service.get("/v1/members", headers=auth(Role.OPERATOR))
    assert listed.json()["items"] == []


@pytest.mark.parametrize(
    "member_id",
    ["' OR '1'='1", "1; DROP TABLE members; --", "%00", "../../etc/passwd", "x" * 5000],
)
async def test_injection_in_path_is_a_plain_404(service: httpx.AsyncClient, member_id: str) -> None:
    await service.post("/v1/members", json={"nickname": "still here"})
    response = await service.get(f"/v1/members/{member_id}", headers=auth(Role.OPERATOR))
    assert response.status_code in (404, 414, 422), response.text
    listed = await service.get("/v1/members", headers=auth(Role.OPERATOR))
    assert [m["nickname"] for m in listed.json()["items"]] == ["still here"]


@pytest.mark.parametrize("cursor", ["' OR 1=1 --", "eyJub3QiOiAiYSBsaXN0In0", "!!!", "W10"])
async def test_tampered_cursors_are_422(service: httpx.AsyncClient, cursor: str) -> None:
    response = await service.get(
        "/v1/members", params={"cursor": cursor}, headers=auth(Role.OPERATOR)
    )
    assert response.status_code == 422
    assert response.json()["type"].endswith("/bad-cursor")


async def test_injection_in_text_fields_is_stored_as_text(service: httpx.AsyncClient) -> None:
    nasty = "Robert'); DROP TABLE members;--"
    created = await service.post("/v1/members", json={"nickname": nasty})
    assert created.status_code == 201
    read = await service.get(f"/v1/members/{created.json()['id']}", headers=auth(Role.OPERATOR))
    assert read.json()["nickname"] == nasty


async def test_a_hostile_request_id_is_replaced(service: httpx.AsyncClient) -> None:
    response = await service.get("/healthz", headers={"X-Request-ID": "a" * 500})
    assert response.headers["x-request-id"] != "a" * 500
    assert len(response.headers["x-request-id"]) <= 200


async def test_nul_characters_in_text_are_refused_not_a_500(service: httpx.AsyncClient) -> None:
    response = await service.post("/v1/members", json={"nickname": "nul\u0000byte"})
    assert response.status_code in (201, 422), response.text
    assert response.headers["content-type"].startswith("application/")
