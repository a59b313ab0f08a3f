"""Routing public paths to services: who is calling, how often, and where it goes.

Every request is admitted once (credential checked, rate limit counted), then
proxied over keep-alive connections (``upstream.UpstreamTransport``): bodies up to
``BUFFER_MAX_BYTES`` are passed whole, larger ones streamed both ways. The service
receives a bearer JWT it verifies itself: the caller's own, or for API keys a
short-lived one minted here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

import httpx
from fastapi import Request
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from services.gateway.ratelimit import RateLimiter
from services.gateway.service import gateway_service
from services.gateway.settings import UPSTREAMS, GatewaySettings
from services.gateway.upstream import (
    Content,
    PooledUpstream,
    Reply,
    Upstream,
    UpstreamTransport,
)
from shared.app import ServiceRuntime
from shared.auth import API_KEY_PREFIX, Principal, Role, bearer_token
from shared.errors import (
    DomainError,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    Unauthorized,
    domain_problem,
)
from shared.observability import REQUEST_ID_HEADER, request_id_var, traceparent_var
from shared.web import get_runtime

MEMBER_SIGN_IN_SCOPE = "members:authenticate"
REQUEST_ID_RAW = REQUEST_ID_HEADER.encode()

# Longest prefix first is not needed: prefixes never nest across services.
ROUTES: dict[str, str] = {
    "/v1/members": "members",
    "/v1/communities": "members",
    "/v1/segments": "members",
    "/v1/posts": "content",
    "/v1/moderation": "content",
    "/v1/campaigns": "campaigns",
    "/v1/accounts": "rewards",
    "/v1/earning-rules": "rewards",
    "/v1/tiers": "rewards",
    "/v1/coupons": "rewards",
    "/v1/catalog": "rewards",
    "/v1/redemptions": "rewards",
    "/v1/metrics": "analytics",
    "/v1/webhooks": "webhooks",
    "/dashboard": "analytics",
}

# What anyone may call without a credential.
# The dashboard page and its chart library are static; the figures need an operator's token.
PUBLIC_ROUTES: frozenset[tuple[str, str]] = frozenset(
    {
        ("POST", "/v1/members"),
        ("GET", "/dashboard"),
        ("GET", "/dashboard/static/plotly.min.js"),
    }
)

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)
# Headers the gateway sets itself; what a client sends under these names is dropped.
GATEWAY_SETS = frozenset(
    {
        "authorization",
        "x-api-key",
        REQUEST_ID_HEADER,
        "traceparent",
        "tracestate",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
    }
)
HOP_BY_HOP_RAW = frozenset(h.encode() for h in HOP_BY_HOP)
NOT_FORWARDED_RAW = frozenset(h.encode() for h in HOP_BY_HOP | GATEWAY_SETS)
PROXIED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
PARTNER_TOKEN_TTL = timedelta(minutes=5)
# Idle upstream connections are dropped before uvicorn's own 5 s keep-alive closes them, so a
# request rarely goes out on a connection the service is closing.
KEEPALIVE_EXPIRY_S = 2.0
# Bodies up to this size are read whole instead of streamed: streaming costs a task group per
# response, which for the typical few-kB JSON reply is most of the proxy's own CPU.
BUFFER_MAX_BYTES = 256 * 1024


class GatewayTimeout(DomainError):
    status, code, title = 504, "upstream-timeout", "Upstream timed out"


def _small_length(header: bytes | None) -> int | None:
    """A declared body length small enough to hold in memory, else None."""
    if header is None or not header.isdigit():
        return None
    length = int(header)
    return length if length <= BUFFER_MAX_BYTES else None


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


class _Relayed(Response):
    """An upstream reply passed on as received: raw headers, no re-encoding."""

    def __init__(
        self, body: bytes, status_code: int, raw_headers: list[tuple[bytes, bytes]]
    ) -> None:
        self.status_code = status_code
        self.body = body
        self.background = None
        self.raw_headers = raw_headers


def _passed_on(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(k, v) for k, v in ((k.lower(), v) for k, v in headers) if k not in HOP_BY_HOP_RAW]


async def _buffered(reply: Reply, service: str) -> Response:
    """A small upstream reply read whole: no streaming machinery for a 2 kB JSON body."""
    try:
        # Raw bytes: the client gets the body exactly as encoded, like the streamed path.
        body = b"".join([chunk async for chunk in reply.body])
    except httpx.TimeoutException as exc:
        raise GatewayTimeout(f"The {service} service did not answer in time") from exc
    except (httpx.RemoteProtocolError, httpx.NetworkError) as exc:
        raise ServiceUnavailable(f"The {service} service closed the connection") from exc
    finally:
        await reply.body.aclose()
    return _Relayed(body, reply.status, _passed_on(reply.headers))


def service_for(path: str) -> str | None:
    prefix = prefix_for(path)
    return None if prefix is None else ROUTES[prefix]


def prefix_for(path: str) -> str | None:
    for prefix in ROUTES:
        if path == prefix or path.startswith(prefix + "/"):
            return prefix
    return None


class Gateway:
    """The gateway's moving parts: upstream clients, rate limiter, minted partner tokens."""

    def __init__(self, settings: GatewaySettings, limiter: RateLimiter) -> None:
        self.settings = settings
        self.limiter = limiter
        timeout = httpx.Timeout(
            settings.upstream_read_timeout_s,
            connect=settings.upstream_connect_timeout_s,
            pool=settings.upstream_connect_timeout_s,
        )
        pool = UpstreamTransport(keepalive_expiry_s=KEEPALIVE_EXPIRY_S)
        # The proxy's path, and an httpx client for the gateway's own calls, on one pool.
        self.upstreams: dict[str, Upstream] = {
            name: PooledUpstream(pool, settings.upstream_url(name), timeout) for name in UPSTREAMS
        }
        self.clients = {
            name: httpx.AsyncClient(
                base_url=settings.upstream_url(name), timeout=timeout, transport=pool
            )
            for name in UPSTREAMS
        }
        self._partner_tokens: dict[str, tuple[float, str]] = {}

    async def close(self) -> None:
        for client in self.clients.values():
            await client.aclose()
        await self.limiter.close()

    async def admit(self, request: Request, runtime: ServiceRuntime) -> Principal | None:
        """Authenticate the caller (if any credential) and count the request against its limit.

        A failed authentication counts against the caller's address, so guessing
        tokens or API keys is rate-limited like any anonymous traffic.
        """
        client = request.client.host if request.client else "unknown"
        anonymous = (f"ip:{client}", self.settings.anonymous_rate_limit_per_min)
        try:
            principal = await self._authenticate(request, runtime)
        except Unauthorized:
            await self._count(*anonymous)
            raise
        if principal is None:
            await self._count(*anonymous)
        else:
            await self._count(f"p:{principal.subject}", self.settings.rate_limit_per_min)
        request.state.principal = principal
        return principal

    async def _count(self, key: str, limit: int) -> None:
        retry_after = await self.limiter.hit(key, limit)
        if retry_after is not None:
            raise RateLimited(retry_after)

    async def _authenticate(self, request: Request, runtime: ServiceRuntime) -> Principal | None:
        token = bearer_token(request)
        api_key = request.headers.get("x-api-key")
        if api_key is None and token is not None and token.startswith(API_KEY_PREFIX):
            api_key = token
        if api_key is not None:
            async with runtime.db.session() as session:
                return await gateway_service.authenticate_api_key(session, api_key)
        if token is not None:
            return runtime.tokens.verify(token)
        return None

    def forwarded_token(
        self, request: Request, principal: Principal, runtime: ServiceRuntime
    ) -> str:
        token = bearer_token(request)
        if principal.role is not Role.PARTNER and token is not None:
            return token
        cached = self._partner_tokens.get(principal.subject)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        minted = runtime.tokens.issue(principal, ttl=PARTNER_TOKEN_TTL)
        refresh_at = now + PARTNER_TOKEN_TTL.total_seconds() / 2
        self._partner_tokens[principal.subject] = (refresh_at, minted)
        return minted

    async def authenticate_member(
        self, username: str, password: str, runtime: ServiceRuntime
    ) -> Principal:
        """Ask the members service to check a member's password; the member's principal.

        The call goes to an internal path the proxy never routes, with a token
        only the gateway mints (scope ``members:authenticate``).
        """
        gatekeeper = Principal(
            subject="gateway", role=Role.PARTNER, scopes=frozenset({MEMBER_SIGN_IN_SCOPE})
        )
        token = runtime.tokens.issue(gatekeeper, ttl=PARTNER_TOKEN_TTL)
        try:
            reply = await self.clients["members"].post(
                "/internal/v1/members/authenticate",
                json={"username": username, "password": password},
                headers={"authorization": f"Bearer {token}"},
            )
        except httpx.HTTPError as exc:
            raise ServiceUnavailable("Member sign-in is unavailable; try again shortly") from exc
        if reply.status_code in (401, 422):
            raise Unauthorized("Unknown username or wrong password")
        if reply.status_code != 200:
            raise ServiceUnavailable("Member sign-in is unavailable; try again shortly")
        member = reply.json()
        return Principal(
            subject=member["member_id"],
            role=Role.MEMBER,
            name=member["nickname"],
            communities=frozenset(member["moderates"]),
        )

    async def forward(self, request: Request, runtime: ServiceRuntime) -> Response:
        scope = request.scope
        path: str = scope["path"]
        service = service_for(path)
        if service is None:
            raise NotFound(f"No route for {path}")
        principal = await self.admit(request, runtime)
        if principal is None and (request.method, path) not in PUBLIC_ROUTES:
            raise Unauthorized("This endpoint needs a bearer token or an API key")
        # ASGI headers arrive as lower-case bytes: passed on as they are.
        received: list[tuple[bytes, bytes]] = scope["headers"]
        headers = [(k, v) for k, v in received if k not in NOT_FORWARDED_RAW]
        client_host = request.client.host if request.client else ""
        headers += [
            (REQUEST_ID_RAW, (request_id_var.get() or "").encode()),
            (b"traceparent", (traceparent_var.get() or "").encode()),
            (b"x-forwarded-for", client_host.encode()),
            (b"x-forwarded-proto", scope["scheme"].encode()),
        ]
        if principal is not None:
            token = self.forwarded_token(request, principal, runtime)
            headers.append((b"authorization", b"Bearer " + token.encode()))
        declared = _header(received, b"content-length")
        streamed = _header(received, b"transfer-encoding") is not None
        content: Content = None
        chunked = False
        if _small_length(declared) is not None and not streamed:
            content = await request.body()
        elif declared is not None or streamed:
            content = request.stream()
            if declared is None or streamed:
                chunked = True
                headers.append((b"transfer-encoding", b"chunked"))
        # The path as the client encoded it: decoded, a %1F would be an invalid URL upstream.
        target: bytes = (scope.get("raw_path") or path.encode()).split(b"?", 1)[0]
        if query := scope["query_string"]:
            target += b"?" + query
        try:
            reply = await self.upstreams[service].send(
                scope["method"].encode(), target, headers, content, chunked=chunked
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            error = ServiceUnavailable(f"The {service} service is not reachable right now")
            error.headers["Retry-After"] = "1"
            raise error from exc
        except httpx.TimeoutException as exc:
            raise GatewayTimeout(f"The {service} service did not answer in time") from exc
        except (httpx.RemoteProtocolError, httpx.NetworkError) as exc:
            # An upstream that dies mid-request resets the connection (ReadError/WriteError).
            raise ServiceUnavailable(f"The {service} service closed the connection") from exc
        if _small_length(_header(reply.headers, b"content-length")) is not None:
            return await _buffered(reply, service)
        response = StreamingResponse(
            reply.body, status_code=reply.status, background=BackgroundTask(reply.body.aclose)
        )
        response.raw_headers = _passed_on(reply.headers)
        return response


class MethodNotAllowed(DomainError):
    status, code, title = 405, "method-not-allowed", "Method Not Allowed"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.headers["Allow"] = ", ".join(PROXIED_METHODS)


@dataclass(frozen=True)
class ProxiedRoute:
    """The route template the request metrics label a proxied request with."""

    path: str


PROXIED_ROUTES = {
    prefix: (ProxiedRoute(prefix), ProxiedRoute(prefix + "/{rest:path}"))
    for prefix in ROUTES
    if prefix.startswith("/v1/")
}


class ProxyPaths:
    """ASGI middleware: a service's public paths go straight to ``Gateway.forward``.

    Sent through FastAPI, a proxied request cost more in route matching, dependency
    solving and exception middleware than in the forwarding itself. It runs inside the
    request context and body-size limit; the gateway's own routes go on to the app, and
    an unexpected error still reaches the app's 500 handler.
    """

    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        prefix = prefix_for(path) if scope["type"] == "http" else None
        routes = PROXIED_ROUTES.get(prefix) if prefix is not None else None
        if routes is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = routes[0] if path == prefix else routes[1]
        request = Request(scope, receive)
        try:
            if scope["method"] not in PROXIED_METHODS:
                raise MethodNotAllowed(f"{scope['method']} is not allowed on {path}")
            response = await self.gateway.forward(request, get_runtime(request))
        except DomainError as exc:
            response = domain_problem(exc, path)
        await response(scope, receive, send)
