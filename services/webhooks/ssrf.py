"""Refusing webhook targets inside our own network, at registration and again at connect time.

A URL checked only when it is registered can later resolve elsewhere (DNS
rebinding), so the dispatcher's HTTP client resolves the host itself, checks
every address it got, and connects to a checked address: the address that was
checked is the one connected to.
"""

from __future__ import annotations

import asyncio
import ipaddress
import select
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]

# Not all of these are "private" to Python's ipaddress (CGNAT, multicast, NAT64).
EXTRA_BLOCKED: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("100.64.0.0/10"),
    ipaddress.ip_network("64:ff9b::/96"),
    ipaddress.ip_network("64:ff9b:1::/48"),
)


class TargetBlocked(httpx.TransportError):
    """The target address is in a range webhooks may not reach."""


def blocked_reason(address: IPAddress) -> str | None:
    """Why ``address`` may not be a webhook target, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            reason = blocked_reason(embedded)
            return f"IPv6 form of {embedded}: {reason}" if reason else None
        if address.teredo is not None:
            return "Teredo address"
    checks = (
        (address.is_unspecified, "unspecified address"),
        (address.is_loopback, "loopback address"),
        (address.is_link_local, "link-local address (cloud metadata lives here)"),
        (address.is_multicast, "multicast address"),
        (address.is_private, "private address"),
        (address.is_reserved, "reserved address"),
        (any(address in net for net in EXTRA_BLOCKED), "shared or translated address range"),
        (not address.is_global, "not a globally routable address"),
    )
    for hit, reason in checks:
        if hit:
            return reason
    return None


class TargetPolicy:
    """Which addresses are allowed: everything public, plus an operator's allow-list."""

    def __init__(self, *, allow_private: bool = False, allowlist: Iterable[str] = ()) -> None:
        self.allow_private = allow_private
        self.allowlist = tuple(ipaddress.ip_network(n, strict=False) for n in allowlist)

    def refusal(self, address: str) -> str | None:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if self.allow_private or any(ip in net for net in self.allowlist):
            return None
        mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        if mapped is not None and any(mapped in net for net in self.allowlist):
            return None
        return blocked_reason(ip)

    def check(self, host: str, addresses: Sequence[str]) -> None:
        for address in addresses:
            reason = self.refusal(address)
            if reason is not None:
                raise TargetBlocked(f"{host} resolves to {address}: {reason}")


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address of ``host`` (numeric forms such as ``2130706433`` included)."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def resolve(host: str, port: int, resolver: Resolver) -> list[str]:
    """An IP literal is its own address; a name goes to the resolver."""
    host = host.strip("[]")
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        return await resolver(host, port)


COALESCE_BYTES = 65536


def is_socket_readable(sock: socket.socket | None) -> bool:
    """Data or EOF waiting on an idle connection: the peer closed it or broke protocol."""
    if sock is None or sock.fileno() < 0:
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class LeanStream(httpcore.AsyncNetworkStream):
    """anyio's stream with two costs per request taken out.

    httpcore asks ``get_extra_info("is_readable")`` before reusing a connection,
    and anyio rebuilds its whole attribute mapping to answer: the socket is kept
    here instead. And a request's head and body go out in one write (one send
    call) when the response is first read, not one write each.
    """

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket: socket.socket | None = inner.get_extra_info("socket")
        self._pending = b""

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        if self._pending:
            await self._flush(timeout)
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        self._pending += buffer
        if len(self._pending) >= COALESCE_BYTES:
            await self._flush(timeout)

    async def _flush(self, timeout: float | None) -> None:  # noqa: ASYNC109
        pending, self._pending = self._pending, b""
        await self._inner.write(pending, timeout)

    async def aclose(self) -> None:
        self._pending = b""
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
    ) -> httpcore.AsyncNetworkStream:
        assert not self._pending  # the handshake comes before any request
        return LeanStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return is_socket_readable(self._socket)
        return self._inner.get_extra_info(info)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves once, checks every address, then connects to a checked address only."""

    def __init__(self, policy: TargetPolicy, resolver: Resolver = system_resolver) -> None:
        self.policy = policy
        self.resolver = resolver
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await resolve(host, port, self.resolver)
        except (OSError, TimeoutError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        if not addresses:
            raise httpcore.ConnectError(f"{host} has no address")
        self.policy.check(host, addresses)
        error: Exception | None = None
        for address in addresses:
            try:
                stream = await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
                return LeanStream(stream)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise TargetBlocked("unix sockets are not webhook targets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_pool(
    policy: TargetPolicy,
    *,
    resolver: Resolver = system_resolver,
    max_connections: int | None = 200,
    max_keepalive_connections: int | None = 50,
    keepalive_expiry_s: float | None = 5.0,
) -> httpcore.AsyncConnectionPool:
    """Keep-alive connections per origin, every new one through a ``GuardedBackend``.

    A reused connection was checked when it was opened; a new one is checked again.
    """
    return httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=max_connections,
        max_keepalive_connections=max_keepalive_connections,
        keepalive_expiry=keepalive_expiry_s,
        network_backend=GuardedBackend(policy, resolver),
    )


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a ``GuardedBackend``; no proxies from the environment."""

    def __init__(
        self,
        policy: TargetPolicy,
        *,
        resolver: Resolver = system_resolver,
        limits: httpx.Limits | None = None,
    ) -> None:
        super().__init__(trust_env=False)
        limits = limits or httpx.Limits(max_connections=200, max_keepalive_connections=50)
        self._pool = guarded_pool(
            policy,
            resolver=resolver,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry_s=limits.keepalive_expiry,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except httpx.ConnectError as exc:
            # httpx wraps what the backend raised; keep "blocked" distinguishable.
            if isinstance(exc.__cause__, TargetBlocked):
                raise exc.__cause__ from None
            raise


async def check_url_target(
    url: httpx.URL, policy: TargetPolicy, *, resolver: Resolver = system_resolver, timeout_s: float
) -> None:
    """At registration: refuse a host that is, or resolves to, a blocked address.

    A name that does not resolve yet is accepted; the connect-time check is the gate.
    """
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        async with asyncio.timeout(timeout_s):
            addresses = await resolve(url.host, port, resolver)
    except (OSError, TimeoutError):
        return
    policy.check(url.host, addresses)
