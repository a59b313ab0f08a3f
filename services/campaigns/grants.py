"""Paying and clawing back rewards: a ``campaign.reward_granted`` event per grant, within budget.

The grant id is a UUIDv5 of ``campaign:member:reason``, so the same prize asked twice (a
settlement replay, a redelivered event) is one row here and one payment in rewards.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.campaigns.events import emit
from services.campaigns.models import Campaign, Grant
from services.campaigns.repository import CampaignRepository, GrantRepository
from shared.events.contracts.campaigns import CampaignRewardGranted, CampaignRewardRevoked

GRANT_NAMESPACE = uuid.UUID("6f1d7a52-2f7e-4c55-9a53-3a0c51f3c0de")


def grant_id(campaign_id: str, member_id: str, reason: str) -> str:
    return str(uuid.uuid5(GRANT_NAMESPACE, f"{campaign_id}:{member_id}:{reason}"))


async def pay(
    session: AsyncSession,
    campaign: Campaign,
    member_id: str,
    reward: dict[str, Any],
    reason: str,
    at: datetime,
) -> str | None:
    """Grant ``reward``; the grant id, or None when already granted or over budget."""
    kind = reward["kind"]
    points = int(reward.get("points") or 0) if kind == "points" else 0
    coupons = 1 if kind == "coupon" else 0
    gid = grant_id(campaign.id, member_id, reason)
    row = {
        "id": gid,
        "campaign_id": campaign.id,
        "member_id": member_id,
        "kind": kind,
        "points": points or None,
        "coupon_template_id": reward.get("coupon_template_id") if coupons else None,
        "reason": reason,
        "granted_at": at,
    }
    grants = GrantRepository(session)
    if not await grants.add(row):
        return None
    if not await CampaignRepository(session).spend(campaign.id, points, coupons):
        await grants.remove(gid)
        return None
    data = CampaignRewardGranted(
        grant_id=gid,
        campaign_id=campaign.id,
        member_id=member_id,
        kind=kind,
        points=row["points"],
        coupon_template_id=row["coupon_template_id"],
        reason=reason,
        granted_at=at,
    )
    await emit(session, data, member_id)
    return gid


async def revoke(session: AsyncSession, gid: str, reason: str, at: datetime) -> bool:
    """Claw a grant back once: ``campaign.reward_revoked`` tells rewards to reverse it."""
    grant = await session.get(Grant, gid, with_for_update=True)
    if grant is None or grant.revoked_at is not None:
        return False
    grant.revoked_at = at
    data = CampaignRewardRevoked(
        grant_id=gid,
        campaign_id=grant.campaign_id,
        member_id=grant.member_id,
        kind=grant.kind,
        points=grant.points,
        coupon_template_id=grant.coupon_template_id,
        reason=reason,
        revoked_at=at,
    )
    await emit(session, data, grant.member_id)
    return True
