"""One service calling another's API under its own identity.

The caller signs a short-lived bearer token for itself (a partner principal with
just the scopes it needs) and renews it at half-life; the callee verifies it like
any other token. Tests hand in an ``httpx.AsyncClient`` on the callee's real app.
"""

from __future__ import annotations

from datetime import timedelta

import httpx

from shared.auth import Principal, TokenCodec
from shared.db import utcnow

TOKEN_TTL = timedelta(minutes=10)


class ServiceToken:
    """A short-lived bearer token for a service itself, renewed at half-life."""

    def __init__(self, tokens: TokenCodec, principal: Principal) -> None:
        self._tokens = tokens
        self._principal = principal
        self._token = ""
        self._renew_at = utcnow()

    def header(self) -> dict[str, str]:
        now = utcnow()
        if now >= self._renew_at:
            self._token = self._tokens.issue(self._principal, ttl=TOKEN_TTL)
            self._renew_at = now + TOKEN_TTL / 2
        return {"Authorization": f"Bearer {self._token}"}


class ServiceClient:
    """Base of a client for another service; closes only the HTTP client it made itself."""

    principal: Principal

    def __init__(
        self,
        tokens: TokenCodec,
        *,
        base_url: str,
        timeout_s: float = 3.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._token = ServiceToken(tokens, self.principal)
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(base_url=base_url, timeout=timeout_s)

    async def close(self) -> None:
        if self._own_client:
            await self._client.aclose()
