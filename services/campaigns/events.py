"""Events the campaigns service publishes; their data models live in shared.events.contracts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.campaigns.models import Campaign
from shared.events.contracts import campaigns as contract
from shared.events.registry import EventData
from shared.outbox import add_event

SOURCE = "/services/campaigns"


async def emit(session: AsyncSession, data: EventData, subject: str) -> None:
    await add_event(session, data, subject=subject, source=SOURCE)


def _head(campaign: Campaign) -> dict[str, str]:
    return {
        "campaign_id": campaign.id,
        "community_id": campaign.community_id,
        "type": campaign.type,
    }


async def campaign_created(session: AsyncSession, campaign: Campaign) -> None:
    data = contract.CampaignCreated(
        **_head(campaign),
        name=campaign.name,
        objective=campaign.objective,
        segment_id=campaign.segment_id,
        starts_at=campaign.starts_at,
        ends_at=campaign.ends_at,
        created_by=campaign.created_by,
        created_at=campaign.created_at,
    )
    await emit(session, data, campaign.id)


async def campaign_launched(
    session: AsyncSession, campaign: Campaign, status: str, at: datetime
) -> None:
    data = contract.CampaignLaunched(
        **_head(campaign),
        status=status,
        starts_at=campaign.starts_at,
        ends_at=campaign.ends_at,
        seed_hash=campaign.seed_hash,
        launched_at=at,
    )
    await emit(session, data, campaign.id)


async def campaign_started(session: AsyncSession, campaign: Campaign, at: datetime) -> None:
    await emit(session, contract.CampaignStarted(**_head(campaign), started_at=at), campaign.id)


async def campaign_ended(session: AsyncSession, campaign: Campaign, at: datetime, by: str) -> None:
    data = contract.CampaignEnded(**_head(campaign), ended_at=at, by=by)
    await emit(session, data, campaign.id)


async def campaign_cancelled(
    session: AsyncSession, campaign: Campaign, reason: str | None, at: datetime
) -> None:
    data = contract.CampaignCancelled(**_head(campaign), reason=reason, cancelled_at=at)
    await emit(session, data, campaign.id)


async def campaign_settled(
    session: AsyncSession, campaign: Campaign, grants: int, points: int, coupons: int, at: datetime
) -> None:
    data = contract.CampaignSettled(
        **_head(campaign), grants=grants, points=points, coupons=coupons, settled_at=at
    )
    await emit(session, data, campaign.id)


async def campaign_joined(
    session: AsyncSession, campaign: Campaign, member_id: str, at: datetime
) -> None:
    data = contract.CampaignJoined(
        campaign_id=campaign.id,
        community_id=campaign.community_id,
        member_id=member_id,
        joined_at=at,
    )
    await emit(session, data, member_id)
