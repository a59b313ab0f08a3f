"""What the rewards service subscribes to: ``{event type: handler}``.

Every earnable event goes through the earning rules; the event id is the ledger
entry's unique ``source``, so even a bypassed inbox cannot pay twice.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards.earning import EARNABLE
from services.rewards.service import RewardsService
from shared.consumer import Batched, ConsumedEvent, Subscription
from shared.events.contracts.campaigns import CampaignRewardGranted, CampaignRewardRevoked
from shared.events.contracts.members import MemberErased


def subscriptions(rewards: RewardsService) -> dict[str, Subscription]:
    async def on_earning_events(session: AsyncSession, run: list[ConsumedEvent]) -> None:
        items = [(event.envelope.type, event.data, event.id) for event in run]
        await rewards.earning.apply_many(session, items)

    async def on_campaign_reward_granted(session: AsyncSession, event: ConsumedEvent) -> None:
        data: CampaignRewardGranted = event.data
        await rewards.grant(session, data)

    async def on_campaign_reward_revoked(session: AsyncSession, event: ConsumedEvent) -> None:
        data: CampaignRewardRevoked = event.data
        await rewards.revoke(session, data)

    async def on_member_erased(session: AsyncSession, event: ConsumedEvent) -> None:
        data: MemberErased = event.data
        await rewards.erase_member(session, data.member_id)

    # One handler object for every earnable type, so a mixed run still pays in bulk.
    handlers: dict[str, Subscription] = dict.fromkeys(EARNABLE, Batched(on_earning_events))
    handlers["campaign.reward_granted"] = on_campaign_reward_granted
    handlers["campaign.reward_revoked"] = on_campaign_reward_revoked
    handlers["member.erased"] = on_member_erased
    return handlers
