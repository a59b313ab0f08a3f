"""Events published by the rewards service on ``community.rewards.v1``."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from shared.events.registry import EventData, event_type
from shared.events.topics import REWARDS


@event_type("points.earned", topic=REWARDS)
class PointsEarned(EventData):
    """Points were credited to a member (by an earning rule, a campaign grant...)."""

    member_id: str
    entry_id: str
    amount: int = Field(gt=0)
    reason_code: str
    reason: str
    rule_id: str | None = None
    source: str = Field(description="The event id or idempotency key that caused it (unique).")
    available_at: datetime = Field(description="When the points become spendable (pending until).")
    expires_at: datetime | None = None
    balance: int = Field(description="Available balance after the entry.")
    earned_at: datetime


@event_type("points.spent", topic=REWARDS)
class PointsSpent(EventData):
    """A member spent points (redemption, lottery entry, ...)."""

    member_id: str
    entry_id: str
    amount: int = Field(gt=0)
    reason_code: str
    source: str
    balance: int
    spent_at: datetime


@event_type("points.expiring", topic=REWARDS)
class PointsExpiring(EventData):
    """Reminder: some of a member's points will expire soon."""

    member_id: str
    amount: int
    expires_at: datetime


@event_type("points.expired", topic=REWARDS)
class PointsExpired(EventData):
    """Points lots reached their expiry date and were removed from the balance."""

    member_id: str
    amount: int
    balance: int
    expired_at: datetime


@event_type("points.adjusted", topic=REWARDS)
class PointsAdjusted(EventData):
    """An operator credited or debited points by hand, with a reason."""

    member_id: str
    entry_id: str
    amount: int = Field(description="Signed: positive credits, negative debits.")
    reason: str
    operator_id: str
    balance: int
    adjusted_at: datetime


@event_type("tier.changed", topic=REWARDS)
class TierChanged(EventData):
    """A member moved to another fan tier (upgrades at once, downgrades at review)."""

    member_id: str
    previous_tier: str | None = Field(None, description="Code of the tier before, if any.")
    tier: str = Field(description="Code of the new tier, e.g. core_fan.")
    tier_name: str = Field(description="Display name, e.g. Core Fan.")
    direction: str = Field(description="upgrade or downgrade.")
    changed_at: datetime


@event_type("coupon.issued", topic=REWARDS)
class CouponIssued(EventData):
    """A coupon code was issued to a member."""

    coupon_id: str
    template_id: str
    member_id: str
    campaign_id: str | None = None
    valid_until: datetime | None = None
    issued_at: datetime


@event_type("coupon.redeemed", topic=REWARDS)
class CouponRedeemed(EventData):
    """A coupon code was redeemed (exactly once)."""

    coupon_id: str
    template_id: str
    member_id: str | None = None
    campaign_id: str | None = None
    order_ref: str | None = None
    redeemed_at: datetime


@event_type("reward.redeemed", topic=REWARDS)
class RewardRedeemed(EventData):
    """A member exchanged points for a catalogue reward."""

    redemption_id: str
    member_id: str
    item_id: str
    item_kind: str = Field(description="physical, coupon or digital.")
    points: int
    quantity: int = 1
    redeemed_at: datetime
