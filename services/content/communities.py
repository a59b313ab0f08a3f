"""The local replica of communities and roles, and erasure of a member's personal text."""

from __future__ import annotations

import logging
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.ext.asyncio import AsyncSession

from services.content.repository import (
    CommentRepository,
    CommunityRepository,
    InteractionRepository,
    ModerationRepository,
    PostRepository,
)
from shared.events.contracts.members import CommunityCreated

log = logging.getLogger(__name__)

ERASED_MARKER = "[removed at the author's request]"
# Payload fields that point at the author's own media; dropped on erasure.
MEDIA_FIELDS = ("media_url", "cover_url", "stream_url")


def _known_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("community time zone %r is unknown here; using UTC", name)
        return "UTC"
    return name


class CommunityService:
    async def created(self, session: AsyncSession, data: CommunityCreated) -> None:
        await CommunityRepository(session).upsert(
            {
                "id": data.community_id,
                "name": data.name,
                "owner_id": data.owner_id,
                "visibility": data.visibility,
                "timezone": _known_zone(data.timezone),
                "created_at": data.created_at,
            }
        )
        await CommunityRepository(session).set_role(
            data.community_id, data.owner_id, "owner", data.created_at
        )

    async def role_set(
        self, session: AsyncSession, community_id: str, member_id: str, role: str, at: datetime
    ) -> None:
        await CommunityRepository(session).set_role(community_id, member_id, role, at)

    async def left(self, session: AsyncSession, community_id: str, member_id: str) -> None:
        await CommunityRepository(session).remove_role(community_id, member_id)

    async def erase_member(self, session: AsyncSession, member_id: str) -> None:
        """Scrub the member's text and media; ids, statuses and counters stay as they were."""
        for post in await PostRepository(session).by_author(member_id):
            post.title = ERASED_MARKER if post.title is not None else None
            post.body = ERASED_MARKER if post.body is not None else None
            payload = dict(post.payload)
            for name in MEDIA_FIELDS:
                if payload.get(name) is not None:
                    payload[name] = None
            if "image_urls" in payload:
                payload["image_urls"] = []
            post.payload = payload
            post.source_name = post.source_url = post.source_licence = None
            post.author_erased = True
        await CommentRepository(session).scrub_author(member_id, ERASED_MARKER)
        await ModerationRepository(session).scrub_report_notes(member_id)
        await InteractionRepository(session).scrub_survey_text(member_id)


community_service = CommunityService()
