"""Routing public paths to services: who is calling, how often, and where it goes.

Every request is admitted once (credential checked, rate limit counted), then
proxied over keep-alive connections (``upstream.UpstreamTransport``): bodies up to
``BUFFER_MAX_BYTES`` are passed whole, larger ones streamed both ways. The service
receives a bearer JWT it verifies itself: the caller's own, or for API keys a
short-lived one minted here.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
from fastapi import Request
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from services.gateway.ratelimit import RateLimiter
from services.gateway.service import gateway_service
from services.gateway.settings import UPSTREAMS, GatewaySettings
from services.gateway.upstream import UpstreamTransport
from shared.app import ServiceRuntime
from shared.auth import API_KEY_PREFIX, Principal, Role, bearer_token
from shared.errors import DomainError, NotFound, RateLimited, ServiceUnavailable, Unauthorized
from shared.observability import REQUEST_ID_HEADER, request_id_var, traceparent_var

MEMBER_SIGN_IN_SCOPE = "members:authenticate"

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
HOP_BY_HOP_RAW = frozenset(h.encode() for h in HOP_BY_HOP)
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
PARTNER_TOKEN_TTL = timedelta(minutes=5)
# Idle upstream connections are dropped before uvicorn's own 5 s keep-alive closes them, so a
# request rarely goes out on a connection the service is closing.
KEEPALIVE_EXPIRY_S = 2.0
# Bodies up to this size are read whole instead of streamed: streaming costs a task group per
# response, which for the typical few-kB JSON reply is most of the proxy's own CPU.
BUFFER_MAX_BYTES = 256 * 1024


class GatewayTimeout(DomainError):
    status, code, title = 504, "upstream-timeout", "Upstream timed out"


def _small_length(header: str | None) -> int | None:
    """A declared body length small enough to hold in memory, else None."""
    if header is None or not header.isdigit():
        return None
    length = int(header)
    return length if length <= BUFFER_MAX_BYTES else None


class _Relayed(Response):
    """An upstream reply passed on as received: raw headers, no re-encoding."""

    def __init__(
        self, body: bytes, status_code: int, raw_headers: list[tuple[bytes, bytes]]
    ) -> None:
        self.status_code = status_code
        self.body = body
        self.background = None
        self.raw_headers = raw_headers


async def _buffered(upstream: httpx.Response, service: str) -> Response:
    """A small upstream reply read whole: no streaming machinery for a 2 kB JSON body."""
    try:
        # Raw bytes: the client gets the body exactly as encoded, like the streamed path.
        body = b"".join([chunk async for chunk in upstream.aiter_raw()])
    except httpx.TimeoutException as exc:
        raise GatewayTimeout(f"The {service} service did not answer in time") from exc
    except (httpx.RemoteProtocolError, httpx.NetworkError) as exc:
        raise ServiceUnavailable(f"The {service} service closed the connection") from exc
    finally:
        await upstream.aclose()
    headers = [
        (name, value)
        for name, value in ((k.lower(), v) for k, v in upstream.headers.raw)
        if name not in HOP_BY_HOP_RAW
    ]
    return _Relayed(body, upstream.status_code, headers)


def service_for(path: str) -> str | None:
    for prefix, service in ROUTES.items():
        if path == prefix or path.startswith(prefix + "/"):
            return service
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
        self.clients = {
            name: httpx.AsyncClient(
                base_url=settings.upstream_url(name),
                timeout=timeout,
                transport=UpstreamTransport(keepalive_expiry_s=KEEPALIVE_EXPIRY_S),
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
        path = request.url.path
        service = service_for(path)
        if service is None:
            raise NotFound(f"No route for {path}")
        principal = await self.admit(request, runtime)
        if principal is None and (request.method, path) not in PUBLIC_ROUTES:
            raise Unauthorized("This endpoint needs a bearer token or an API key")
        headers = [
            (k, v)
            for k, v in request.headers.items()
            if k not in HOP_BY_HOP and k not in GATEWAY_SETS
        ]
        headers.append((REQUEST_ID_HEADER, request_id_var.get() or ""))
        headers.append(("traceparent", traceparent_var.get() or ""))
        headers.append(("x-forwarded-for", request.client.host if request.client else ""))
        headers.append(("x-forwarded-proto", request.url.scheme))
        if principal is not None:
            headers.append(
                ("authorization", f"Bearer {self.forwarded_token(request, principal, runtime)}")
            )
        length = _small_length(request.headers.get("content-length"))
        content: bytes | AsyncIterator[bytes] | None = None
        if length is not None and "transfer-encoding" not in request.headers:
            content = await request.body()
        elif "content-length" in request.headers or "transfer-encoding" in request.headers:
            content = request.stream()
        client = self.clients[service]
        # The path as the client encoded it: decoded, a %1F would be an invalid URL upstream.
        raw_path = (request.scope.get("raw_path") or path.encode()).split(b"?", 1)[0]
        upstream_request = client.build_request(
            request.method,
            httpx.URL(raw_path.decode("ascii", "replace")),
            params=request.url.query,
            headers=headers,
            content=content,
        )
        # Straight to the client's transport (its pool, or whatever a test mounted): the client's
        # own send() adds a cookie jar the gateway must not keep and a third of the proxy's CPU.
        transport = client._transport_for_url(upstream_request.url)
        try:
            upstream = await transport.handle_async_request(upstream_request)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            error = ServiceUnavailable(f"The {service} service is not reachable right now")
            error.headers["Retry-After"] = "1"
            raise error from exc
        except httpx.TimeoutException as exc:
            raise GatewayTimeout(f"The {service} service did not answer in time") from exc
        except (httpx.RemoteProtocolError, httpx.NetworkError) as exc:
            # An upstream that dies mid-request resets the connection (ReadError/WriteError).
            raise ServiceUnavailable(f"The {service} service closed the connection") from exc
        if _small_length(upstream.headers.get("content-length")) is not None:
            return await _buffered(upstream, service)
        response_headers = {
            k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP
        }
        return StreamingResponse(
            upstream.aiter_raw(),
            status_code=upstream.status_code,
            headers=response_headers,
            background=BackgroundTask(upstream.aclose),
        )
