"""Events published by the members service on ``community.members.v1``.

Personal contact details (phone, e-mail) never travel on the bus: consumers get
ids and the public profile only.
"""

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
    region: str | None = Field(
        None, description="Most specific region known: city, province or country."
    )
    country: str | None = None
    province: str | None = None
    city: str | None = None
    gender: str | None = Field(None, description="female, male, other or undisclosed.")
    age_band: str | None = Field(None, description="Derived from the birth year, e.g. 25-34.")
    interests: list[str] = Field(default_factory=list)
    referrer_id: str | None = Field(None, description="Who invited the member, if anyone.")
    marketing_consent: bool = False
    registered_at: datetime


@event_type("member.profile_updated", topic=MEMBERS)
class MemberProfileUpdated(EventData):
    """A member changed public profile fields; ``changed`` names them."""

    member_id: str
    changed: list[str] = Field(description="Names of the fields that changed.")
    nickname: str
    gender: str | None = None
    age_band: str | None = None
    country: str | None = None
    province: str | None = None
    city: str | None = None
    interests: list[str] = Field(default_factory=list)
    updated_at: datetime


@event_type("member.referred", topic=MEMBERS)
class MemberReferred(EventData):
    """A member registered with another member's invite code."""

    member_id: str = Field(description="The invitee.")
    referrer_id: str
    referred_at: datetime


@event_type("member.referral_activated", topic=MEMBERS)
class MemberReferralActivated(EventData):
    """An invitee did a first qualifying action (post, comment, check-in...) after registering."""

    member_id: str = Field(description="The invitee.")
    referrer_id: str
    activated_by: str = Field(description="The event type that activated the referral.")
    activated_at: datetime


@event_type("member.consent_changed", topic=MEMBERS)
class MemberConsentChanged(EventData):
    """A member gave or withdrew marketing consent."""

    member_id: str
    marketing_consent: bool
    source: str = Field(description="Where consent was captured: registration, profile, support...")
    changed_at: datetime


@event_type("member.erased", topic=MEMBERS)
class MemberErased(EventData):
    """A member's personal data was erased; every service drops what it holds about them.

    The pseudonymous ``member_id`` stays valid so ledgers and counts remain consistent.
    """

    member_id: str
    erased_at: datetime


@event_type("community.created", topic=MEMBERS)
class CommunityCreated(EventData):
    """A community (group) was created; its owner is its first member."""

    community_id: str
    name: str
    owner_id: str
    visibility: str = Field(description="public or invite_only.")
    timezone: str = Field("Asia/Shanghai", description="IANA time zone of the community.")
    created_at: datetime


@event_type("member.joined_community", topic=MEMBERS)
class MemberJoinedCommunity(EventData):
    """A member joined a community."""

    community_id: str
    member_id: str
    role: str = Field(description="owner, moderator or member.")
    joined_at: datetime


@event_type("member.left_community", topic=MEMBERS)
class MemberLeftCommunity(EventData):
    """A member left (or was removed from) a community."""

    community_id: str
    member_id: str
    left_at: datetime


@event_type("member.role_changed", topic=MEMBERS)
class MemberRoleChanged(EventData):
    """A member's role in a community changed."""

    community_id: str
    member_id: str
    role: str = Field(description="owner, moderator or member.")
    previous_role: str
    changed_by: str = Field(description="Who changed it (member or staff id).")
    changed_at: datetime
