"""The one HTTP call campaigns makes: is a member in a segment (members answers 204 or 404)."""

from __future__ import annotations

from datetime import timedelta

import httpx

from services.campaigns.errors import MembersUnavailable
from shared.auth import Principal, Role, TokenCodec
from shared.db import utcnow

PRINCIPAL = Principal(subject="campaigns", role=Role.PARTNER, scopes=frozenset({"segments:read"}))
TOKEN_TTL = timedelta(minutes=10)


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
        self._tokens = tokens
        self._client = client or httpx.AsyncClient(base_url=base_url, timeout=timeout_s)
        self._token = ""
        self._token_renew_at = utcnow()

    def _bearer(self) -> str:
        now = utcnow()
        if now >= self._token_renew_at:
            self._token = self._tokens.issue(PRINCIPAL, ttl=TOKEN_TTL)
            self._token_renew_at = now + TOKEN_TTL / 2
        return self._token

    async def in_segment(self, segment_id: str, member_id: str) -> bool:
        try:
            response = await self._client.get(
                f"/v1/segments/{segment_id}/members/{member_id}",
                headers={"Authorization": f"Bearer {self._bearer()}"},
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
