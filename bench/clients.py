"""Lean HTTP clients for benchmarks: what a request costs the driver should not be measured.

A benchmark that drives a service shares the machine's two cores with it, and httpx
spends about as much CPU on a request as a lean FastAPI route does (URL merging,
cookie extraction, header models). These clients do only what the benchmarks need:

- ``AsgiClient`` calls an ASGI app in this process: one scope, one body message, the
  reply collected. No sockets, no HTTP parsing: the app's own cost, as the tests see it.
- ``LeanClient`` speaks keep-alive HTTP/1.1 over real sockets to a running server, one
  connection per concurrent caller, replies parsed by httptools (as uvicorn does).

Both answer ``LeanResponse`` (status and body bytes).
"""

from __future__ import annotations

import asyncio
import json as jsonlib
from typing import Any, cast
from urllib.parse import urlencode

import httptools
import httpx
from starlette.types import ASGIApp, Message


class LeanResponse:
    __slots__ = ("body", "status_code")

    def __init__(self, status_code: int, body: bytes) -> None:
        self.status_code = status_code
        self.body = body

    def json(self) -> Any:
        return jsonlib.loads(self.body)


def _target(path: str, params: dict[str, Any] | None) -> str:
    return f"{path}?{urlencode(params)}" if params else path


class AsgiClient:
    """Requests straight into an ASGI app (its lifespan already entered by the caller)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        json: Any = None,
    ) -> LeanResponse:
        body = b"" if json is None else jsonlib.dumps(json).encode()
        raw = [(b"host", b"bench"), (b"content-length", str(len(body)).encode())]
        if json is not None:
            raw.append((b"content-type", b"application/json"))
        raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        query = urlencode(params or {}).encode()
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query,
            "root_path": "",
            "headers": raw,
            "client": ("127.0.0.1", 50000),
            "server": ("bench", 80),
        }
        delivered = False
        replied = asyncio.Event()
        status = 0
        chunks: list[bytes] = []

        async def receive() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await replied.wait()  # as a server would: the client hangs up after the reply
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    replied.set()

        await self.app(scope, receive, send)
        return LeanResponse(status, b"".join(chunks))


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; one request at a time, parsed by httptools."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[LeanResponse] | None = None
        self.body: list[bytes] = []
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionResetError("connection closed"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_exception(exc)

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        response = LeanResponse(self.parser.get_status_code(), b"".join(self.body))
        self.body = []
        if not self.parser.should_keep_alive():
            self.closed = True
            if self.transport is not None:
                self.transport.close()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(response)


class LeanClient:
    """Raw keep-alive HTTP/1.1 to a server, a connection per concurrent caller.

    httpx spends about a millisecond of CPU per request; on a 2-core machine that
    shares the cores with the platform, the driver's own CPU would be measured as the
    platform's latency. This client does only what the benchmarks need.
    """

    def __init__(self, base_url: str) -> None:
        url = httpx.URL(base_url)
        self.host, self.port = url.host, url.port or 80
        self.host_header = f"{self.host}:{self.port}".encode()
        self.idle: list[_Connection] = []

    async def _connection(self) -> _Connection:
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                return conn
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Connection, self.host, self.port)
        return conn

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        json: Any = None,
    ) -> LeanResponse:
        lines = [
            f"{method} {_target(path, params)} HTTP/1.1".encode(),
            b"host: " + self.host_header,
        ]
        body = b""
        if json is not None:
            body = jsonlib.dumps(json).encode()
            lines.append(b"content-type: application/json")
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(b"content-length: " + str(len(body)).encode())
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}".encode())
        payload = b"\r\n".join(lines) + b"\r\n\r\n" + body
        conn = await self._connection()
        assert conn.transport is not None
        conn.waiter = asyncio.get_running_loop().create_future()
        conn.transport.write(payload)
        try:
            response = await conn.waiter
        finally:
            conn.waiter = None
        if not conn.closed:
            self.idle.append(conn)
        return response

    def close(self) -> None:
        for conn in self.idle:
            if conn.transport is not None:
                conn.transport.close()
        self.idle.clear()
