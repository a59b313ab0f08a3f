"""The gateway's upstream transport against a real uvicorn server on a real socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from services.gateway.upstream import UpstreamTransport
from shared.broker import free_port
from tests.gateway.serving import serving

BIG = 3 * 1024 * 1024


async def echo(request: Request) -> Response:
    body = await request.body()
    return JSONResponse(
        {
            "method": request.method,
            "path": request.url.path,
            "query": request.url.query,
            "size": len(body),
            "tail": body[-8:].decode("latin-1"),
            "peer": request.client.port if request.client else None,
            "header": request.headers.get("x-probe"),
        }
    )


async def stream(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(BIG // 65536):
            yield bytes([65 + i % 26]) * 65536

    return StreamingResponse(chunks(), media_type="application/octet-stream")


async def slow(request: Request) -> Response:
    await asyncio.sleep(2)
    return Response("late")


async def empty(request: Request) -> Response:
    return Response(status_code=204)


APP = Starlette(
    routes=[
        Route("/echo/{rest:path}", echo, methods=["GET", "POST", "PUT", "HEAD"]),
        Route("/stream", stream),
        Route("/slow", slow),
        Route("/empty", empty, methods=["DELETE"]),
    ]
)


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async with serving(APP) as url:
        yield url


@pytest.fixture
async def client(server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=server, transport=UpstreamTransport(), timeout=httpx.Timeout(5.0, read=1.0)
    ) as client:
        yield client


async def test_requests_reuse_one_keep_alive_connection(client: httpx.AsyncClient) -> None:
    replies = [
        (await client.get("/echo/a%2Fb", params={"q": "1 2"}, headers={"x-probe": "p"})).json()
        for _ in range(3)
    ]
    assert replies[0] == {
        "method": "GET", "path": "/echo/a/b", "query": "q=1+2", "size": 0, "tail": "",
        "peer": replies[0]["peer"], "header": "p",
    }  # fmt: skip
    assert len({reply["peer"] for reply in replies}) == 1


async def test_concurrent_requests_each_get_their_own_reply(client: httpx.AsyncClient) -> None:
    replies = await asyncio.gather(
        *(client.post(f"/echo/{i}", content=str(i).encode() * 100) for i in range(20))
    )
    assert [r.json()["path"] for r in replies] == [f"/echo/{i}" for i in range(20)]
    assert [r.json()["size"] for r in replies] == [len(str(i)) * 100 for i in range(20)]


async def test_bodies_stream_both_ways(client: httpx.AsyncClient) -> None:
    async def upload() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b"x" * 65536
        yield b"the-end!"

    sent = await client.put("/echo/up", content=upload())  # chunked: no length known
    assert sent.json()["size"] == 40 * 65536 + 8
    assert sent.json()["tail"] == "the-end!"
    async with client.stream("GET", "/stream") as response:
        received = b"".join([chunk async for chunk in response.aiter_raw()])
    assert len(received) == BIG
    assert received[:1] == b"A"
    assert received[-1:] == bytes([65 + (BIG // 65536 - 1) % 26])
    assert (await client.get("/echo/after")).status_code == 200  # the connection went back


async def test_head_and_no_content_replies_leave_the_pool_usable(
    client: httpx.AsyncClient,
) -> None:
    head = await client.head("/echo/x")
    assert head.status_code == 200
    assert head.content == b""
    assert (await client.delete("/empty")).status_code == 204
    assert (await client.get("/echo/y")).json()["path"] == "/echo/y"


async def test_a_slow_service_is_a_read_timeout(client: httpx.AsyncClient) -> None:
    with pytest.raises(httpx.ReadTimeout):
        await client.get("/slow")
    assert (await client.get("/echo/z")).status_code == 200


async def test_a_service_that_is_down_is_a_connect_error() -> None:
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{free_port()}", transport=UpstreamTransport()
    ) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/anything")


async def test_a_pooled_connection_that_was_closed_is_not_reused(server: str) -> None:
    transport = UpstreamTransport()
    async with httpx.AsyncClient(base_url=server, transport=transport) as client:
        first = (await client.get("/echo/1")).json()["peer"]
        for pooled in transport._idle.values():
            for conn in pooled:
                assert conn.transport is not None
                conn.transport.close()
        await asyncio.sleep(0.05)
        second = await client.get("/echo/2")
        assert second.status_code == 200
        assert second.json()["peer"] != first
