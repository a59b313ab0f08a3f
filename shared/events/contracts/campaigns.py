"""Events published by the campaigns service on ``community.campaigns.v1``."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import Field

from shared.events.registry import EventData, event_type
from shared.events.topics import CAMPAIGNS


@event_type("campaign.checked_in", topic=CAMPAIGNS)
class CampaignCheckedIn(EventData):
    """A member checked in for a day of a check-in challenge."""

    campaign_id: str
    community_id: str | None = None
    member_id: str
    day: date = Field(description="The local day checked in for, in the campaign's time zone.")
    streak: int
    total: int
    checked_in_at: datetime


@event_type("campaign.reward_granted", topic=CAMPAIGNS)
class CampaignRewardGranted(EventData):
    """A campaign awarded a member a prize; rewards pays it exactly once per ``grant_id``."""

    grant_id: str = Field(description="Unique per grant; rewards dedupes on it.")
    campaign_id: str
    member_id: str
    kind: str = Field(description="points, coupon or item.")
    points: int | None = Field(None, gt=0)
    coupon_template_id: str | None = None
    item_id: str | None = None
    reason: str
    granted_at: datetime
