"""Campaigns' call to members: is a member in a segment (members answers 204 or 404)."""

from __future__ import annotations

from urllib.parse import quote

import httpx

from services.campaigns.errors import MembersUnavailable
from shared.auth import Principal, Role
from shared.service_client import ServiceClient


class MembersClient(ServiceClient):
    """Injectable: tests hand it an ``httpx.AsyncClient`` on the real members app in process."""

    principal = Principal(
        subject="campaigns", role=Role.PARTNER, scopes=frozenset({"segments:read"})
    )

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
