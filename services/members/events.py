"""Events the members service publishes; their data models live in shared.events.contracts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.members.models import Community, Member
from services.members.taxonomy import age_band
from shared.db import utcnow
from shared.events.contracts import members as contract
from shared.events.registry import EventData
from shared.outbox import add_event

SOURCE = "/services/members"


async def _emit(session: AsyncSession, data: EventData, subject: str) -> None:
    await add_event(session, data, subject=subject, source=SOURCE)


def _profile(member: Member) -> dict[str, object]:
    band = age_band(member.birth_year, utcnow().year)
    return {
        "nickname": member.nickname,
        "gender": member.gender,
        "age_band": band.value if band else None,
        "country": member.country,
        "province": member.province,
        "city": member.city,
        "interests": member.interests,
    }


async def member_registered(session: AsyncSession, member: Member) -> None:
    data = contract.MemberRegistered.model_validate(
        {
            "member_id": member.id,
            "channel": member.channel,
            "region": member.city or member.province or member.country,
            "referrer_id": member.referrer_id,
            "marketing_consent": member.marketing_consent,
            "registered_at": member.created_at,
            **_profile(member),
        }
    )
    await _emit(session, data, member.id)


async def member_profile_updated(session: AsyncSession, member: Member, changed: list[str]) -> None:
    data = contract.MemberProfileUpdated.model_validate(
        {
            "member_id": member.id,
            "changed": changed,
            "updated_at": member.updated_at,
            **_profile(member),
        }
    )
    await _emit(session, data, member.id)


async def member_referred(session: AsyncSession, member: Member, referrer_id: str) -> None:
    assert member.referred_at is not None
    data = contract.MemberReferred(
        member_id=member.id, referrer_id=referrer_id, referred_at=member.referred_at
    )
    await _emit(session, data, member.id)


async def member_referral_activated(
    session: AsyncSession, member_id: str, referrer_id: str, activated_by: str, at: datetime
) -> None:
    data = contract.MemberReferralActivated(
        member_id=member_id, referrer_id=referrer_id, activated_by=activated_by, activated_at=at
    )
    await _emit(session, data, member_id)


async def member_consent_changed(session: AsyncSession, member: Member) -> None:
    assert member.consent_at is not None
    data = contract.MemberConsentChanged(
        member_id=member.id,
        marketing_consent=member.marketing_consent,
        source=member.consent_source or "unknown",
        changed_at=member.consent_at,
    )
    await _emit(session, data, member.id)


async def member_erased(session: AsyncSession, member_id: str, at: datetime) -> None:
    await _emit(session, contract.MemberErased(member_id=member_id, erased_at=at), member_id)


async def community_created(session: AsyncSession, community: Community) -> None:
    data = contract.CommunityCreated(
        community_id=community.id,
        name=community.name,
        owner_id=community.owner_id,
        visibility=community.visibility,
        timezone=community.timezone,
        created_at=community.created_at,
    )
    await _emit(session, data, community.id)


async def member_joined_community(
    session: AsyncSession, community_id: str, member_id: str, role: str, at: datetime
) -> None:
    data = contract.MemberJoinedCommunity(
        community_id=community_id, member_id=member_id, role=role, joined_at=at
    )
    await _emit(session, data, member_id)


async def member_left_community(
    session: AsyncSession, community_id: str, member_id: str, at: datetime
) -> None:
    data = contract.MemberLeftCommunity(community_id=community_id, member_id=member_id, left_at=at)
    await _emit(session, data, member_id)


async def member_role_changed(
    session: AsyncSession,
    community_id: str,
    member_id: str,
    role: str,
    previous_role: str,
    changed_by: str,
    at: datetime,
) -> None:
    data = contract.MemberRoleChanged(
        community_id=community_id,
        member_id=member_id,
        role=role,
        previous_role=previous_role,
        changed_by=changed_by,
        changed_at=at,
    )
    await _emit(session, data, member_id)
