"""Events published by the members service on ``community.members.v1``."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from shared.events.registry import EventData, event_type
from shared.events.topics import MEMBERS


@event_type("member.registered", topic=MEMBERS)
class MemberRegistered(EventData):
    """A person registered as a member of the brand's community."""

    member_id: str = Field(description="The new member's id (UUID).")
    nickname: str
    channel: str = Field(description="Where the member came from: app, web, wechat, ...")
    region: str | None = None
    registered_at: datetime
