"""Who is calling: JWT issue and verify, roles, scopes, and FastAPI dependencies.

The gateway authenticates every request (bearer JWT or partner API key) and
forwards a bearer JWT to the service; the service verifies it again with the
shared secret, so a service reached around the gateway trusts nobody.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request

from shared.errors import Forbidden, Unauthorized

ISSUER = "community-gateway"
AUDIENCE = "community-platform"
ALGORITHM = "HS256"
API_KEY_PREFIX = "ck_"


class Role(StrEnum):
    MEMBER = "member"
    MODERATOR = "moderator"
    OPERATOR = "operator"
    PARTNER = "partner"


STAFF_ROLES = frozenset({Role.MODERATOR, Role.OPERATOR})


@dataclass(frozen=True)
class Principal:
    subject: str
    role: Role
    name: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    communities: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_operator(self) -> bool:
        return self.role is Role.OPERATOR

    def has_scope(self, scope: str) -> bool:
        """Partner scopes look like ``members:read``; ``members:*`` and ``*`` widen them."""
        resource = scope.split(":", 1)[0]
        return bool({scope, f"{resource}:*", "*"} & self.scopes)

    def can_act_for(self, member_id: str) -> bool:
        return self.is_operator or (self.role is Role.MEMBER and self.subject == member_id)


# A token verified once is remembered this long (never past its ``exp``): the gateway and
# every service see the same token on each request, and PyJWT's decode costs ~0.1-0.6 ms.
VERIFIED_CACHE_S = 30.0
VERIFIED_CACHE_SIZE = 10_000


class TokenCodec:
    def __init__(self, secret: str, *, ttl: timedelta = timedelta(hours=1)) -> None:
        self._secret = secret
        self.ttl = ttl
        # token -> (principal, wall-clock time until which it may be reused)
        self._verified: dict[str, tuple[Principal, float]] = {}

    def issue(self, principal: Principal, *, ttl: timedelta | None = None) -> str:
        now = datetime.now(UTC)
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": principal.subject,
            "role": principal.role.value,
            "iat": now,
            "nbf": now,
            "exp": now + (ttl or self.ttl),
            "jti": secrets.token_hex(8),
        }
        if principal.name:
            claims["name"] = principal.name
        if principal.scopes:
            claims["scopes"] = sorted(principal.scopes)
        if principal.communities:
            claims["communities"] = sorted(principal.communities)
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> Principal:
        now = time.time()
        cached = self._verified.get(token)
        if cached is not None:
            if now < cached[1]:
                return cached[0]
            del self._verified[token]
        principal, expires = self._decode(token)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()  # a crude bound: live tokens are re-verified once
        self._verified[token] = (principal, min(expires, now + VERIFIED_CACHE_S))
        return principal

    def _decode(self, token: str) -> tuple[Principal, float]:
        """The token's principal and its ``exp`` (Unix seconds), or ``Unauthorized``."""
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["exp", "sub", "aud", "iss"]},
            )
            role = Role(str(claims.get("role")))
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The access token has expired") from None
        except (jwt.InvalidTokenError, ValueError) as exc:
            raise Unauthorized(f"The access token is not valid: {exc}") from None
        principal = Principal(
            subject=str(claims["sub"]),
            role=role,
            name=claims.get("name"),
            scopes=frozenset(claims.get("scopes", ())),
            communities=frozenset(claims.get("communities", ())),
        )
        return principal, float(claims["exp"])


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def new_api_key() -> tuple[str, str]:
    """A partner API key and the prefix shown in listings: ``ck_<prefix>_<secret>``."""
    prefix = secrets.token_hex(4)
    return f"{API_KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}", prefix


def hash_api_key(key: str) -> str:
    # API keys carry 256 random bits, so one SHA-256 is enough; no password stretching needed.
    return hashlib.sha256(key.encode()).hexdigest()


def _codec(request: Request) -> TokenCodec:
    codec: TokenCodec = request.app.state.tokens
    return codec


def request_principal(request: Request) -> Principal | None:
    """The bearer token's principal, verified once per request and remembered on it."""
    cached: Principal | None = getattr(request.state, "verified_principal", None)
    if cached is not None:
        return cached
    token = bearer_token(request)
    if token is None:
        return None
    principal = _codec(request).verify(token)
    request.state.verified_principal = principal
    return principal


def _required_principal(request: Request) -> Principal:
    principal = request_principal(request)
    if principal is None:
        raise Unauthorized("This endpoint needs a bearer token")
    return principal


# The dependencies are async: a plain def would cost a thread-pool hop on every request. Each
# takes the request itself rather than another dependency: FastAPI's per-request solving of a
# chain of dependencies cost more than the checks.
async def optional_principal(request: Request) -> Principal | None:
    return request_principal(request)


async def current_principal(request: Request) -> Principal:
    return _required_principal(request)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
OptionalPrincipal = Annotated[Principal | None, Depends(optional_principal)]


def require_roles(*roles: Role) -> Callable[[Request], Awaitable[Principal]]:
    allowed = frozenset(roles)

    async def check(request: Request) -> Principal:
        principal = _required_principal(request)
        if principal.role not in allowed:
            names = ", ".join(sorted(r.value for r in allowed))
            raise Forbidden(f"This action needs one of the roles: {names}")
        return principal

    return check


def require_scope(
    scope: str, *, staff: Iterable[Role] = (Role.OPERATOR,)
) -> Callable[[Request], Awaitable[Principal]]:
    """Staff roles in ``staff`` pass; partners need ``scope``; everyone else is refused."""
    staff_roles = frozenset(staff)

    async def check(request: Request) -> Principal:
        principal = _required_principal(request)
        if principal.role in staff_roles:
            return principal
        if principal.role is Role.PARTNER and principal.has_scope(scope):
            return principal
        raise Forbidden(f"This action needs the scope {scope!r}")

    return check


OperatorPrincipal = Annotated[Principal, Depends(require_roles(Role.OPERATOR))]
