"""Campaigns' call to members: is a member in a segment (members answers 204 or 404).

Also the service's own bearer token, shared with the rewards client."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

import httpx

from services.campaigns.errors import MembersUnavailable
from shared.auth import Principal, Role, TokenCodec
from shared.db import utcnow

PRINCIPAL = Principal(subject="campaigns", role=Role.PARTNER, scopes=frozenset({"segments:read"}))
TOKEN_TTL = timedelta(minutes=10)


class ServiceToken:
    """A short-lived bearer token for the campaigns service itself, renewed at half-life."""

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


class MembersClient:
    """Injectable: tests hand it an ``httpx.AsyncClient`` on the real members app in process."""

    def __init__(
        self,
        tokens: TokenCodec,
        *,
        base_url: str,
        timeout_s: float = 3.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._token = ServiceToken(tokens, PRINCIPAL)
        self._client = client or httpx.AsyncClient(base_url=base_url, timeout=timeout_s)

    async def in_segment(self, segment_id: str, member_id: str) -> bool:
        try:
            response = await self._client.get(
                f"/v1/segments/{quote(segment_id, safe='')}/members/{quote(member_id, safe='')}",
                headers=self._token.header(),
            )
        except httpx.HTTPError as exc:
            raise MembersUnavailable(f"Segment check failed: {type(exc).__name__}") from None
        if response.status_code == 204:
            return True
        if response.status_code == 404:
            return False
        raise MembersUnavailable(f"Segment check answered {response.status_code}")

    async def close(self) -> None:
        await self._client.aclose()
