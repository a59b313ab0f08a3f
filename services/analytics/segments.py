"""Per-segment figures: members owns the rule language, analytics filters its per-member rollups.

Analytics never re-implements segment rules. It asks members for a segment's
live member ids (``GET /v1/segments/{id}/members``, a partner token with
``segments:read``), keeps them as a snapshot table for ``segment_cache_s``, and
member-level queries join on that table: one indexed subquery, whatever the size.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

import httpx
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics.models import SegmentMember, SegmentSnapshot
from shared.auth import Principal, Role
from shared.db import conflict_insert, utcnow
from shared.errors import NotFound, ServiceUnavailable
from shared.service_client import ServiceClient

PAGE = 200  # the members API's largest page
INSERT_CHUNK = 500  # rows per INSERT: far below SQLite's and asyncpg's parameter limits


class SegmentNotFound(NotFound):
    code, title = "segment-not-found", "No such segment"


class MembersUnavailable(ServiceUnavailable):
    code, title = "members-unavailable", "The members service did not answer"


class SegmentSource(ServiceClient):
    """Fetches a segment's member ids from members; tests hand it a client on the real app."""

    principal = Principal(
        subject="analytics", role=Role.PARTNER, scopes=frozenset({"segments:read"})
    )

    async def member_ids(self, segment_id: str) -> list[str]:
        headers = self._token.header()
        ids: list[str] = []
        cursor: str | None = None
        while True:
            params = {"limit": str(PAGE)} | ({"cursor": cursor} if cursor else {})
            try:
                response = await self._client.get(
                    f"/v1/segments/{quote(segment_id, safe='')}/members",
                    params=params,
                    headers=headers,
                )
            except httpx.HTTPError as exc:
                raise MembersUnavailable(f"Segment lookup failed: {type(exc).__name__}") from None
            if response.status_code == 404:
                raise SegmentNotFound(f"Segment {segment_id} does not exist")
            if response.status_code != 200:
                raise MembersUnavailable(f"Segment lookup answered {response.status_code}")
            page = response.json()
            ids += [item["id"] for item in page["items"]]
            cursor = page.get("next_cursor")
            if not cursor:
                return ids


class SegmentSnapshots:
    def __init__(self, source: SegmentSource | None, cache_s: float) -> None:
        self.source = source
        self.cache_s = cache_s

    async def refresh(self, session: AsyncSession, segment_id: str) -> None:
        """Make ``segment_members`` hold the segment, fetching it when the snapshot is stale."""
        snapshot = await session.get(SegmentSnapshot, segment_id)
        now = utcnow()
        if snapshot is not None and now - snapshot.fetched_at <= timedelta(seconds=self.cache_s):
            return
        if self.source is None:
            raise MembersUnavailable("No members service configured for segment lookups")
        ids = await self.source.member_ids(segment_id)
        await session.execute(delete(SegmentMember).where(SegmentMember.segment_id == segment_id))
        for start in range(0, len(ids), INSERT_CHUNK):
            chunk = ids[start : start + INSERT_CHUNK]
            rows = [{"segment_id": segment_id, "member_id": member} for member in chunk]
            stmt = conflict_insert(session, SegmentMember).values(rows)
            await session.execute(stmt.on_conflict_do_nothing())
        upsert = conflict_insert(session, SegmentSnapshot).values(
            segment_id=segment_id, fetched_at=now, size=len(ids)
        )
        await session.execute(
            upsert.on_conflict_do_update(
                index_elements=["segment_id"], set_={"fetched_at": now, "size": len(ids)}
            )
        )
