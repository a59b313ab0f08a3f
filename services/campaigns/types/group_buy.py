"""Group buy: a member starts a group, others join it; at ``group_size`` it forms.

Members of a formed group each get the campaign's coupon (within the coupon budget).
Groups still open at settlement fail. One group per member per campaign (one participant
row); ``size`` only grows by a conditional UPDATE, so a group never overfills.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.campaigns.errors import GroupNotFound, GroupNotOpen
from services.campaigns.events import emit
from services.campaigns.grants import pay
from services.campaigns.models import BuyGroup, Campaign, Participant
from services.campaigns.repository import changed
from services.campaigns.schemas import GroupBuyRules
from shared.events.contracts.campaigns import GroupBuyFailed, GroupBuyFormed


async def _members(session: AsyncSession, group_id: str) -> Sequence[str]:
    stmt = (
        select(Participant.member_id)
        .where(Participant.group_id == group_id)
        .order_by(Participant.joined_at, Participant.member_id)
    )
    return (await session.scalars(stmt)).all()


async def join(
    session: AsyncSession,
    campaign: Campaign,
    participant: Participant,
    group_id: str | None,
    now: datetime,
) -> None:
    rules = GroupBuyRules.model_validate(campaign.rules)
    if group_id is None:
        group = BuyGroup(
            id=str(uuid.uuid4()),
            campaign_id=campaign.id,
            leader_id=participant.member_id,
            size=1,
            status="open",
            created_at=now,
        )
        session.add(group)
        await session.flush()
        group_id = group.id
    else:
        found = await session.get(BuyGroup, group_id)
        if found is None or found.campaign_id != campaign.id:
            raise GroupNotFound(f"Group {group_id} is not in campaign {campaign.id}")
        grew = await session.execute(
            update(BuyGroup)
            .where(
                BuyGroup.id == group_id,
                BuyGroup.status == "open",
                BuyGroup.size < rules.group_size,
            )
            .values(size=BuyGroup.size + 1)
            .execution_options(synchronize_session=False)
        )
        if changed(grew) != 1:
            raise GroupNotOpen(f"Group {group_id} takes no more members")
    participant.group_id = group_id
    await session.flush()
    formed = await session.execute(
        update(BuyGroup)
        .where(
            BuyGroup.id == group_id,
            BuyGroup.status == "open",
            BuyGroup.size >= rules.group_size,
        )
        .values(status="formed", closed_at=now)
        .execution_options(synchronize_session=False)
    )
    if changed(formed) != 1:
        return
    members = await _members(session, group_id)
    await emit(
        session,
        GroupBuyFormed(
            campaign_id=campaign.id, group_id=group_id, member_ids=list(members), formed_at=now
        ),
        group_id,
    )
    reward = {"kind": "coupon", "coupon_template_id": rules.coupon_template_id}
    for member_id in members:
        await pay(session, campaign, member_id, reward, f"groupbuy:{group_id}", now)


async def settle(session: AsyncSession, campaign: Campaign, now: datetime) -> None:
    open_groups = (
        await session.scalars(
            select(BuyGroup.id).where(
                BuyGroup.campaign_id == campaign.id, BuyGroup.status == "open"
            )
        )
    ).all()
    for group_id in open_groups:
        failed = await session.execute(
            update(BuyGroup)
            .where(BuyGroup.id == group_id, BuyGroup.status == "open")
            .values(status="failed", closed_at=now)
            .execution_options(synchronize_session=False)
        )
        if changed(failed) == 1:
            members = await _members(session, group_id)
            await emit(
                session,
                GroupBuyFailed(
                    campaign_id=campaign.id,
                    group_id=group_id,
                    member_ids=list(members),
                    failed_at=now,
                ),
                group_id,
            )
