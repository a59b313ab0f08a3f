"""The gateway's connections to the services: keep-alive HTTP/1.1, requests as raw bytes.

httpx's default transport (httpcore, h11, anyio) spent over a third of the gateway's CPU
per proxied request: a readability syscall per pooled connection on every checkout,
pure-Python HTTP parsing and several layers of stream wrappers; building an
``httpx.Request`` (three URL parses, header normalising) cost another third. This module
keeps what the proxy needs: a LIFO pool of idle connections per service, requests written
from the bytes the proxy already holds, the response parsed by httptools (the parser
uvicorn uses), bodies streamed with back-pressure, and httpx's exceptions and timeouts.
The pool is also an httpx transport, so the gateway's own calls (sign-in, OpenAPI) use an
ordinary ``httpx.AsyncClient`` on the same connections.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import NamedTuple, Protocol, cast

import httptools
import httpx

SAFE_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS"})
# Stop reading from the socket while this much body waits for the client to take it.
HIGH_WATER_BYTES = 1024 * 1024


class _Connection(asyncio.Protocol):
    """One connection to a service; one request at a time."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.head: asyncio.Future[None] | None = None
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.complete = False
        self.error: Exception | None = None
        self.wakeup: asyncio.Future[None] | None = None
        self.paused = False

    def begin(self) -> None:
        self._reset()
        self.head = asyncio.get_running_loop().create_future()

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete:
            self._fail(httpx.RemoteProtocolError("the service closed the connection"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"invalid response: {exc}"))
            self.close()

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.parser.get_status_code() < 200:
            self.headers = []  # an interim reply (100 Continue): the real one follows
            return
        if self.head is not None and not self.head.done():
            self.head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER_BYTES and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.parser.get_status_code() < 200:
            return
        self.complete = True
        if not self.parser.should_keep_alive():
            self.close()
        self._wake()

    # helpers
    def _fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error
        if self.head is not None and not self.head.done():
            self.head.set_exception(error)
        self._wake()

    def _wake(self) -> None:
        if self.wakeup is not None and not self.wakeup.done():
            self.wakeup.set_result(None)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def next_chunk(self, timeout_s: float | None) -> bytes | None:
        """The next piece of body, or None at its end."""
        while not self.chunks:
            if self.complete:
                return None
            if self.error is not None:
                raise self.error
            self.wakeup = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(timeout_s):
                    await self.wakeup
            except TimeoutError:
                raise httpx.ReadTimeout("the service did not send the body in time") from None
            finally:
                self.wakeup = None
        chunk = self.chunks.popleft()
        self.buffered -= len(chunk)
        if self.paused and self.buffered <= HIGH_WATER_BYTES // 2 and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return chunk


# What a request body may be: bytes, or pieces of it as they arrive.
Content = bytes | Iterable[bytes] | AsyncIterable[bytes] | None


class Outgoing(NamedTuple):
    head: bytes  # request line and headers, encoded
    content: Content
    chunked: bool
    safe: bool  # may be retried on a fresh connection


class Body(httpx.AsyncByteStream):
    """A reply's body as it arrives; closing it hands the connection back to the pool."""

    def __init__(self, pool: UpstreamTransport, conn: _Connection, read_s: float | None) -> None:
        self._pool = pool
        self._conn: _Connection | None = conn
        self._read_s = read_s

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        if conn is None:
            return
        while (chunk := await conn.next_chunk(self._read_s)) is not None:
            yield chunk

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool.release(conn)


class Reply(NamedTuple):
    status: int
    headers: list[tuple[bytes, bytes]]
    body: httpx.AsyncByteStream  # raw bytes as they arrive; ``aclose`` when done


def _timeouts(request: httpx.Request) -> tuple[float | None, float | None]:
    timeout = request.extensions.get("timeout") or {}
    return timeout.get("connect"), timeout.get("read")


class UpstreamTransport(httpx.AsyncBaseTransport):
    """Pools of keep-alive connections, one per ``host:port``.

    Idle connections are dropped after ``keepalive_expiry_s``, before uvicorn's own 5 s
    keep-alive closes them, so a request rarely goes out on a connection being closed; a
    reused connection found closed is retried once on a new one for safe methods.

    ``send`` takes the request as raw bytes (what the proxy already holds, no URL parsing or
    header normalising); ``handle_async_request`` adapts an ``httpx.Request`` to it, so the
    transport also serves an ordinary ``httpx.AsyncClient``.
    """

    def __init__(self, *, max_idle: int = 50, keepalive_expiry_s: float = 2.0) -> None:
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._max_idle = max_idle
        self._keepalive_s = keepalive_expiry_s
        self._open: set[_Connection] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme != "http":
            raise httpx.UnsupportedProtocol("the gateway reaches services over plain http")
        headers = list(request.headers.raw)
        if "host" not in request.headers:
            headers.insert(0, (b"host", url.netloc))
        connect_s, read_s = _timeouts(request)
        reply = await self.send(
            (url.host, url.port or 80),
            request.method.encode(),
            url.raw_path,
            headers,
            cast(Content, request.stream),
            chunked=request.headers.get("transfer-encoding", "").lower() == "chunked",
            connect_s=connect_s,
            read_s=read_s,
        )
        return httpx.Response(
            reply.status,
            headers=reply.headers,
            stream=reply.body,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def send(
        self,
        address: tuple[str, int],
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        content: Content,
        *,
        chunked: bool = False,
        connect_s: float | None = None,
        read_s: float | None = None,
    ) -> Reply:
        """One request on a pooled connection; ``headers`` must hold ``host``."""
        head = [method, b" ", target, b" HTTP/1.1\r\n"]
        for name, value in headers:
            head += (name, b": ", value, b"\r\n")
        head.append(b"\r\n")
        request = Outgoing(b"".join(head), content, chunked, safe=method in SAFE_METHODS)
        conn, reused = await self._checkout(address, connect_s)
        try:
            return await self._exchange(conn, request, read_s)
        except httpx.RemoteProtocolError:
            # A reused connection the service closed just now: once more on a fresh one, for
            # safe methods only (a POST the service did act on must not run twice).
            if not (reused and request.safe):
                raise
        conn, _ = await self._checkout(address, connect_s, fresh=True)
        return await self._exchange(conn, request, read_s)

    async def _checkout(
        self, address: tuple[str, int], connect_s: float | None, *, fresh: bool = False
    ) -> tuple[_Connection, bool]:
        idle = self._idle.get(address)
        now = time.monotonic()
        while idle and not fresh:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < self._keepalive_s:
                return conn, True
            conn.close()
            self._open.discard(conn)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(connect_s):
                _, conn = await loop.create_connection(lambda: _Connection(address), *address)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {address[0]}:{address[1]}") from None
        except OSError as exc:
            raise httpx.ConnectError(str(exc)) from exc
        self._open.add(conn)
        return conn, False

    async def _exchange(self, conn: _Connection, request: Outgoing, read_s: float | None) -> Reply:
        assert conn.transport is not None
        conn.begin()
        if conn.closed:
            self._open.discard(conn)
            raise httpx.RemoteProtocolError("the service closed the connection")
        conn.transport.write(request.head)
        try:
            await self._send_body(conn, request.content, request.chunked)
            if conn.head is None:
                raise httpx.RemoteProtocolError("no response")
            async with asyncio.timeout(read_s):
                await conn.head
        except TimeoutError:
            conn.close()
            self._open.discard(conn)
            raise httpx.ReadTimeout("the service did not answer in time") from None
        except BaseException:
            conn.close()
            self._open.discard(conn)
            raise
        if request.head.startswith(b"HEAD "):
            # The parser cannot know a HEAD reply has no body: the connection is not reused.
            conn.complete = True
            conn.close()
        return Reply(conn.parser.get_status_code(), conn.headers, Body(self, conn, read_s))

    async def _send_body(self, conn: _Connection, content: Content, chunked: bool) -> None:
        if isinstance(content, bytes):
            self._write(conn, content, chunked)
        elif isinstance(content, AsyncIterable):
            async for chunk in content:
                self._write(conn, chunk, chunked)
        elif content is not None:
            for chunk in content:
                self._write(conn, chunk, chunked)
        if chunked:
            self._write(conn, b"0\r\n\r\n", chunked=False)

    @staticmethod
    def _write(conn: _Connection, chunk: bytes, chunked: bool) -> None:
        # Bodies are bounded by the gateway's own body-size limit, so the socket buffer may hold
        # a whole one; no write back-pressure needed.
        assert conn.transport is not None
        if not chunk:
            return
        if conn.closed or conn.transport.is_closing():
            # The service died while the client was still sending (uvloop raises on a write
            # to a closed transport, asyncio drops it): a network error, hence a 503.
            raise httpx.WriteError("the service closed the connection before the body was sent")
        if chunked:
            conn.transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        else:
            conn.transport.write(chunk)

    def release(self, conn: _Connection) -> None:
        """Back to the pool when its response was read to the end, else closed."""
        if conn.complete and not conn.closed and conn.error is None:
            idle = self._idle.setdefault(conn.address, [])
            if len(idle) < self._max_idle:
                conn.idle_since = time.monotonic()
                idle.append(conn)
                return
        conn.close()
        self._open.discard(conn)

    async def aclose(self) -> None:
        for conn in list(self._open):
            conn.close()
        self._open.clear()
        self._idle.clear()


class Upstream(Protocol):
    """A service the proxy forwards to: a request as raw bytes in, its reply out."""

    async def send(
        self,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        content: Content,
        *,
        chunked: bool,
    ) -> Reply: ...


class PooledUpstream:
    """A service at ``base_url`` reached over the pool's keep-alive connections."""

    def __init__(self, pool: UpstreamTransport, base_url: str, timeout: httpx.Timeout) -> None:
        url = httpx.URL(base_url)
        if url.scheme != "http":
            raise ValueError(f"the gateway reaches services over plain http, not {base_url}")
        self._pool = pool
        self._address = (url.host, url.port or 80)
        self._host = (b"host", url.netloc)
        self._connect_s = timeout.connect
        self._read_s = timeout.read

    async def send(
        self,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        content: Content,
        *,
        chunked: bool,
    ) -> Reply:
        return await self._pool.send(
            self._address,
            method,
            target,
            [self._host, *headers],
            content,
            chunked=chunked,
            connect_s=self._connect_s,
            read_s=self._read_s,
        )


class ClientUpstream:
    """Any ``httpx.AsyncClient`` as an upstream, e.g. one on a service app in process."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def send(
        self,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        content: Content,
        *,
        chunked: bool,
    ) -> Reply:
        request = self._client.build_request(
            method.decode(), target.decode("ascii"), headers=headers, content=content
        )
        response = await self._client.send(request, stream=True)
        assert isinstance(response.stream, httpx.AsyncByteStream)  # an async client's
        return Reply(response.status_code, response.headers.raw, response.stream)
