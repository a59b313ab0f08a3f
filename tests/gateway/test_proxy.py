"""What the gateway sends upstream and passes back, against a real service on a real socket."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from shared.auth import Role
from tests.conftest import Databases, auth, running
from tests.gateway.serving import serving


async def echo(request: Request) -> Response:
    body = await request.body()
    reply = JSONResponse(
        {
            "method": request.method,
            "raw_path": request.scope["raw_path"].decode(),
            "query": request.url.query,
            "headers": [[k.decode(), v.decode()] for k, v in request.scope["headers"]],
            "body": body.decode(),
        }
    )
    reply.raw_headers += [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")]
    return reply


UPSTREAM = Starlette(routes=[Route("/{rest:path}", echo, methods=["GET", "POST", "PUT"])])


@pytest.fixture
async def gateway(databases: Databases) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(UPSTREAM) as members:
        database = await databases.new("gateway")
        settings = GatewaySettings.model_validate(
            {"database_url": database, "log_json": False, "members_url": members}
        )
        async with running(create_app(settings, run_background=False)) as client:
            yield client


def headers_of(reply: httpx.Response) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {}
    for name, value in reply.json()["headers"]:
        seen.setdefault(name, []).append(value)
    return seen


async def test_the_request_goes_upstream_as_sent_with_the_gateways_own_headers(
    gateway: httpx.AsyncClient,
) -> None:
    caller = auth(Role.MEMBER, "m-1")
    reply = await gateway.get(
        "/v1/members/a%2Fb",
        params={"q": "1 2"},
        headers={
            **caller,
            "x-probe": "kept",
            "x-forwarded-for": "6.6.6.6",
            "x-request-id": "rid-42",
            "connection": "keep-alive, x-probe",
        },
    )
    assert reply.status_code == 200
    sent = reply.json()
    assert (sent["method"], sent["raw_path"]) == ("GET", "/v1/members/a%2Fb")
    assert sent["query"] == "q=1+2"
    headers = headers_of(reply)
    assert headers["x-probe"] == ["kept"]
    assert headers["authorization"] == [caller["Authorization"]]
    assert headers["x-forwarded-for"] == ["127.0.0.1"]  # the caller's claim is dropped
    assert headers["x-request-id"] == ["rid-42"]
    assert len(headers["traceparent"]) == 1
    assert len(headers["host"]) == 1
    assert reply.headers["x-request-id"] == "rid-42"


async def test_a_reply_keeps_repeated_headers(gateway: httpx.AsyncClient) -> None:
    reply = await gateway.get("/v1/members/x", headers=auth(Role.MEMBER))
    assert reply.headers.get_list("set-cookie") == ["a=1", "b=2"]


async def test_a_body_of_unknown_length_is_streamed_upstream_chunked(
    gateway: httpx.AsyncClient,
) -> None:
    async def pieces() -> AsyncIterator[bytes]:
        for piece in (b"one ", b"two ", b"three"):
            yield piece

    reply = await gateway.post("/v1/members", content=pieces(), headers=auth(Role.OPERATOR))
    assert reply.json()["body"] == "one two three"
    assert headers_of(reply)["transfer-encoding"] == ["chunked"]


async def test_a_method_no_service_path_takes_is_405_with_allow(
    gateway: httpx.AsyncClient,
) -> None:
    reply = await gateway.request("TRACE", "/v1/members/x", headers=auth(Role.OPERATOR))
    assert reply.status_code == 405
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.headers["allow"] == "GET, POST, PUT, PATCH, DELETE, OPTIONS"


async def test_proxied_requests_are_measured_by_route_template(
    gateway: httpx.AsyncClient,
) -> None:
    await gateway.get("/v1/members/some-id", headers=auth(Role.MEMBER))
    metrics = (await gateway.get("/metrics")).text
    assert 'method="GET",route="/v1/members/{rest:path}",service="gateway"' in metrics
    assert "some-id" not in metrics
