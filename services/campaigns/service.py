"""The campaign core: lifecycle, eligibility, participation, leaderboard, settlement.

Type-specific rules live in ``services/campaigns/types/``; this module dispatches to them.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.campaigns import events
from services.campaigns.errors import (
    AlreadyJoined,
    CampaignLocked,
    CampaignNotFound,
    CampaignNotOpen,
    InvalidCampaign,
    InvalidTransition,
    NotCommunityMember,
    NotInTargetSegment,
    WrongCampaignType,
)
from services.campaigns.members_client import MembersClient
from services.campaigns.models import Campaign, Grant, Participant
from services.campaigns.repository import (
    CampaignRepository,
    ParticipantRepository,
    ReplicaRepository,
)
from services.campaigns.rewards_client import RewardsClient
from services.campaigns.schemas import (
    RULES_BY_TYPE,
    AnyCampaignCreate,
    CampaignRead,
    CampaignUpdate,
    FlashSaleCampaignCreate,
    LeaderboardRead,
    LeaderboardRow,
    Status,
)
from services.campaigns.types import checkin, group_buy, lottery, quiz, trial, ugc
from shared.auth import Principal, Role
from shared.db import utcnow
from shared.scheduler import claim

DEFAULT_TIMEZONE = "UTC"
EDITABLE = ("draft", "scheduled")

Clock = Callable[[], datetime]


def _seconds_remaining(campaign: Campaign, now: datetime) -> int | None:
    if campaign.status not in ("scheduled", "active"):
        return None
    return max(0, int((campaign.ends_at - now).total_seconds()))


class CampaignService:
    def __init__(
        self,
        members: MembersClient | None,
        clock: Clock = utcnow,
        rewards: RewardsClient | None = None,
    ) -> None:
        self.members = members
        self.rewards = rewards
        self.clock = clock

    # --- reading ---------------------------------------------------------------------------

    async def get(self, session: AsyncSession, campaign_id: str, *, lock: bool = False) -> Campaign:
        campaign = await CampaignRepository(session).get(campaign_id, lock=lock)
        if campaign is None:
            raise CampaignNotFound(f"Campaign {campaign_id} does not exist")
        return campaign

    def read(self, campaign: Campaign) -> CampaignRead:
        now = self.clock()
        read = CampaignRead.model_validate(campaign)
        read.seconds_remaining = _seconds_remaining(campaign, now)
        if campaign.type == "flash_sale" and campaign.budget_coupons is not None:
            read.stock_left = campaign.budget_coupons - campaign.spent_coupons
        if campaign.status == "scheduled":
            read.seconds_until_start = max(0, int((campaign.starts_at - now).total_seconds()))
        return read

    async def leaderboard(
        self, session: AsyncSession, campaign: Campaign, limit: int
    ) -> LeaderboardRead:
        rows = await ParticipantRepository(session).top(campaign.id, limit)
        return LeaderboardRead(
            campaign_id=campaign.id,
            status=cast(Status, campaign.status),
            seconds_remaining=_seconds_remaining(campaign, self.clock()),
            items=[
                LeaderboardRow(
                    rank=i, member_id=p.member_id, score=p.score, streak=p.streak, total=p.total
                )
                for i, p in enumerate(rows, start=1)
            ],
        )

    async def can_see_participants(
        self, session: AsyncSession, principal: Principal, campaign: Campaign
    ) -> bool:
        if principal.is_operator:
            return True
        if principal.role is Role.PARTNER:
            return principal.has_scope("campaigns:read")
        if principal.role is Role.MODERATOR:
            if campaign.community_id in principal.communities:
                return True
            role = await ReplicaRepository(session).role(campaign.community_id, principal.subject)
            return role in ("moderator", "owner")
        return False

    # --- lifecycle -------------------------------------------------------------------------

    async def create(
        self, session: AsyncSession, body: AnyCampaignCreate, created_by: str
    ) -> Campaign:
        repo = CampaignRepository(session)
        await self._check_links(session, body.type, body.rules.model_dump())
        zone = body.timezone or await repo.timezone_of(body.community_id) or DEFAULT_TIMEZONE
        campaign = Campaign(
            id=str(uuid.uuid4()),
            name=body.name,
            type=body.type,
            objective=body.objective,
            community_id=body.community_id,
            segment_id=body.segment_id,
            status="draft",
            timezone=zone,
            starts_at=body.starts_at,
            ends_at=body.ends_at,
            rules=body.rules.model_dump(mode="json"),
            budget_points=body.budget_points,
            # A flash sale's stock is its coupon budget: the one counter claims decrement.
            budget_coupons=(
                body.rules.stock
                if isinstance(body, FlashSaleCampaignCreate)
                else body.budget_coupons
            ),
            spent_points=0,
            spent_coupons=0,
            created_by=created_by,
            created_at=self.clock(),
        )
        session.add(campaign)
        await session.flush()
        await events.campaign_created(session, campaign)
        return campaign

    async def update(
        self, session: AsyncSession, campaign_id: str, body: CampaignUpdate
    ) -> Campaign:
        """Edit a campaign before it runs. Once active its terms are promises to members."""
        campaign = await self.get(session, campaign_id, lock=True)
        if campaign.status not in EDITABLE:
            raise CampaignLocked(f"A {campaign.status} campaign cannot be edited")
        values = body.model_dump(exclude_unset=True, exclude={"rules"})
        for name in ("name", "objective", "starts_at", "ends_at", "timezone"):
            if name in values and values[name] is None:
                raise InvalidCampaign(f"{name} cannot be cleared", field=name)
        if body.rules is not None:
            values["rules"] = self._rules(campaign.type, body.rules)
            await self._check_links(session, campaign.type, values["rules"])
        if campaign.type == "flash_sale":
            # The stock is the coupon budget (as at creation).
            values["budget_coupons"] = values.get("rules", campaign.rules)["stock"]
        starts = values.get("starts_at", campaign.starts_at)
        ends = values.get("ends_at", campaign.ends_at)
        if ends <= starts:
            raise InvalidCampaign("ends_at must be after starts_at", field="ends_at")
        if campaign.status == "scheduled" and ends <= self.clock():
            raise InvalidCampaign("A scheduled campaign must end in the future", field="ends_at")
        # The conditional UPDATE refuses an edit racing a launch or the scheduler's start.
        if not await CampaignRepository(session).edit(campaign.id, EDITABLE, **values):
            raise CampaignLocked("The campaign started while it was being edited")
        return await self.get(session, campaign_id)

    async def _check_links(self, session: AsyncSession, type_: str, rules: dict[str, Any]) -> None:
        """A lottery whose tickets come from check-ins names a check-in challenge."""
        linked = rules.get("checkin_campaign_id") if type_ == "lottery" else None
        if linked is None:
            return
        found = await CampaignRepository(session).get(linked)
        if found is None or found.type != "checkin":
            raise InvalidCampaign(
                f"checkin_campaign_id {linked} is not a check-in challenge",
                field="rules.checkin_campaign_id",
            )

    @staticmethod
    def _rules(type_: str, raw: dict[str, Any]) -> dict[str, Any]:
        try:
            rules = RULES_BY_TYPE[type_].model_validate(raw)
        except ValidationError as exc:
            errors = [
                {
                    "field": ".".join(["body", "rules", *map(str, e["loc"])]),
                    "message": e["msg"],
                    "type": e["type"],
                }
                for e in exc.errors()
            ]
            raise InvalidCampaign(f"rules do not fit a {type_} campaign", errors=errors) from None
        dumped: dict[str, Any] = rules.model_dump(mode="json")
        return dumped

    async def launch(self, session: AsyncSession, campaign_id: str) -> Campaign:
        campaign = await self.get(session, campaign_id, lock=True)
        now = self.clock()
        if campaign.status != "draft":
            raise InvalidTransition(f"Only a draft can be launched; this one is {campaign.status}")
        if campaign.ends_at <= now:
            raise InvalidTransition("The campaign's window is already over")
        target = "active" if campaign.starts_at <= now else "scheduled"
        values: dict[str, Any] = {"launched_at": now}
        if campaign.type == "lottery":
            # Commit to the seed before any entry exists; the draw reveals it.
            seed = secrets.token_hex(32)
            values.update(seed=seed, seed_hash=hashlib.sha256(seed.encode()).hexdigest())
        repo = CampaignRepository(session)
        if not await repo.move(campaign.id, "draft", target, **values):
            raise InvalidTransition("The campaign was launched concurrently")
        campaign = await self.get(session, campaign_id)
        await events.campaign_launched(session, campaign, target, now)
        if target == "active":
            await events.campaign_started(session, campaign, now)
        return campaign

    async def end(self, session: AsyncSession, campaign_id: str, by: str) -> Campaign:
        campaign = await self.get(session, campaign_id)
        now = self.clock()
        if not await CampaignRepository(session).move(campaign.id, "active", "ended", ended_at=now):
            raise InvalidTransition(
                f"Only an active campaign can end; this one is {campaign.status}"
            )
        campaign = await self.get(session, campaign_id)
        await events.campaign_ended(session, campaign, now, by)
        return campaign

    async def cancel(self, session: AsyncSession, campaign_id: str, reason: str | None) -> Campaign:
        campaign = await self.get(session, campaign_id)
        now = self.clock()
        repo = CampaignRepository(session)
        for status in ("draft", "scheduled", "active", "ended"):
            if campaign.status == status and await repo.move(
                campaign.id, status, "cancelled", cancelled_at=now
            ):
                campaign = await self.get(session, campaign_id)
                await events.campaign_cancelled(session, campaign, reason, now)
                return campaign
        raise InvalidTransition(f"A {campaign.status} campaign cannot be cancelled")

    async def settle(self, session: AsyncSession, campaign_id: str) -> Campaign:
        """Exactly once: the conditional ended -> settled UPDATE admits one caller."""
        campaign = await self.get(session, campaign_id)
        now = self.clock()
        if not await CampaignRepository(session).move(
            campaign.id, "ended", "settled", settled_at=now
        ):
            raise InvalidTransition(
                f"Only an ended campaign can settle; this one is {campaign.status}"
            )
        campaign = await self.get(session, campaign_id)
        # Type-specific prizes; the grant ids make a replay of any of them pay nothing twice.
        match campaign.type:
            case "checkin":
                await checkin.settle(session, campaign, now)
            case "lottery":
                await lottery.settle(session, campaign, now)
            case "ugc":
                await ugc.settle(session, campaign, now)
            case "quiz":
                await quiz.settle(session, campaign, now)
            case "group_buy":
                await group_buy.settle(session, campaign, now)
            case "trial":
                await trial.settle(session, campaign, now)
        totals = (
            await session.execute(
                select(
                    func.count(),
                    func.coalesce(func.sum(Grant.points), 0),
                    func.count(Grant.coupon_template_id),
                ).where(Grant.campaign_id == campaign.id, Grant.revoked_at.is_(None))
            )
        ).one()
        await events.campaign_settled(
            session, campaign, int(totals[0] or 0), int(totals[1] or 0), int(totals[2] or 0), now
        )
        return await self.get(session, campaign_id)

    async def advance(self, session: AsyncSession, limit: int = 200) -> int:
        """The scheduler's tick: start and end campaigns whose time came, each exactly once."""
        now = self.clock()
        repo = CampaignRepository(session)
        due = (await session.scalars(claim(repo.due(now, limit)))).all()
        moved = 0
        for campaign in due:
            status = campaign.status
            if status == "scheduled" and await repo.move(campaign.id, "scheduled", "active"):
                await events.campaign_started(session, campaign, now)
                status = "active"
                moved += 1
            if (
                status == "active"
                and campaign.ends_at <= now
                and await repo.move(campaign.id, "active", "ended", ended_at=now)
            ):
                await events.campaign_ended(session, campaign, now, "schedule")
                moved += 1
        return moved

    # --- participation ---------------------------------------------------------------------

    async def check_eligible(
        self, session: AsyncSession, campaign: Campaign, member_id: str, now: datetime
    ) -> None:
        if campaign.status != "active" or not campaign.starts_at <= now < campaign.ends_at:
            raise CampaignNotOpen(
                f"Campaign {campaign.id} is {campaign.status} and open from "
                f"{campaign.starts_at.isoformat()} to {campaign.ends_at.isoformat()}"
            )
        if await ReplicaRepository(session).role(campaign.community_id, member_id) is None:
            raise NotCommunityMember(
                f"Member {member_id} is not in community {campaign.community_id}"
            )
        if campaign.segment_id is not None:
            if self.members is None:
                raise NotInTargetSegment("No segment check is configured")
            if not await self.members.in_segment(campaign.segment_id, member_id):
                raise NotInTargetSegment(
                    f"Member {member_id} is not in segment {campaign.segment_id}"
                )

    async def participate(
        self,
        session: AsyncSession,
        campaign_id: str,
        member_id: str,
        *,
        types: tuple[str, ...] | None = None,
        explicit: bool = False,
    ) -> tuple[Campaign, Participant, datetime]:
        """Check eligibility and return the (locked) participant, joining first if needed."""
        campaign = await self.get(session, campaign_id)
        if types is not None and campaign.type not in types:
            raise WrongCampaignType(f"A {campaign.type} campaign does not take this")
        now = self.clock()
        await self.check_eligible(session, campaign, member_id, now)
        participants = ParticipantRepository(session)
        if await participants.add(campaign.id, member_id, now):
            await events.campaign_joined(session, campaign, member_id, now)
        elif explicit:
            raise AlreadyJoined(f"Member {member_id} already joined campaign {campaign.id}")
        # The insert above comes first on purpose: it opens the write transaction on SQLite
        # (which takes no row locks), so the reads below and the per-member limits checked
        # after them are serialised there as FOR UPDATE serialises them on PostgreSQL.
        participant = await participants.get(campaign.id, member_id, lock=True)
        assert participant is not None
        return campaign, participant, now
