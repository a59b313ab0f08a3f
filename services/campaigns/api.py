"""Campaigns HTTP API: parse, authorise, call the service, shape the reply."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Request, Response, status
from sqlalchemy import select

from services.campaigns.errors import CampaignNotFound, InvalidApplication, WrongCampaignType
from services.campaigns.models import Campaign, Entry
from services.campaigns.repository import CampaignRepository, GrantRepository, ParticipantRepository
from services.campaigns.schemas import (
    CampaignCreate,
    CampaignPage,
    CampaignRead,
    CampaignType,
    CampaignUpdate,
    CancelRequest,
    CheckinCreate,
    CheckinDay,
    CheckinList,
    CheckinRead,
    DrawRead,
    EntryCreate,
    EntryJudgement,
    EntryPage,
    EntryRead,
    GrantPage,
    GrantRead,
    LeaderboardRead,
    LotteryRules,
    ParticipantCreate,
    ParticipantPage,
    ParticipantRead,
    SelectionUpdate,
    SettlementRead,
    Status,
    VoteCreate,
    VoteFlagPage,
    VoteFlagRead,
    VoteRead,
)
from services.campaigns.service import CampaignService
from services.campaigns.types import checkin, flash_sale, group_buy, lottery, trial, ugc
from shared.auth import CurrentPrincipal, Principal, Role, require_roles, require_scope
from shared.errors import Forbidden
from shared.pagination import Cursor, Limit, decode_cursor, encode_cursor
from shared.web import SessionDep, TransactionalRoute

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"], route_class=TransactionalRoute)


async def get_campaign_service(request: Request) -> CampaignService:
    service: CampaignService = request.app.state.campaign_service
    return service


Campaigns = Annotated[CampaignService, Depends(get_campaign_service)]
Reader = Annotated[
    Principal,
    Depends(require_scope("campaigns:read", staff=(Role.OPERATOR, Role.MODERATOR, Role.MEMBER))),
]
Writer = Annotated[Principal, Depends(require_scope("campaigns:write"))]
Operator = Annotated[Principal, Depends(require_roles(Role.OPERATOR))]
MemberSelf = Annotated[Principal, Depends(require_roles(Role.MEMBER))]


def _after(cursor: str | None) -> str | None:
    return None if cursor is None else str(decode_cursor(cursor, 1)[0])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=CampaignRead)
async def create_campaign(
    body: Annotated[CampaignCreate, Body()],
    session: SessionDep,
    service: Campaigns,
    principal: Writer,
    response: Response,
) -> CampaignRead:
    """Draft a campaign of any type (operators; partners with ``campaigns:write``)."""
    campaign = await service.create(session, body, principal.subject)
    response.headers["Location"] = f"{router.prefix}/{campaign.id}"
    return service.read(campaign)


@router.get("", response_model=CampaignPage)
async def list_campaigns(
    session: SessionDep,
    service: Campaigns,
    principal: Reader,
    status_: Annotated[Status | None, Query(alias="status")] = None,
    type_: Annotated[CampaignType | None, Query(alias="type")] = None,
    community_id: Annotated[str | None, Query(max_length=36)] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> CampaignPage:
    """Campaigns by id, filtered by status, type and community; each with its countdown."""
    filters = []
    if principal.role is Role.MEMBER:
        filters.append(Campaign.status != "draft")
    if status_ is not None:
        filters.append(Campaign.status == status_)
    if type_ is not None:
        filters.append(Campaign.type == type_)
    if community_id is not None:
        filters.append(Campaign.community_id == community_id)
    rows = await CampaignRepository(session).page(filters, _after(cursor), limit + 1)
    return CampaignPage(
        items=[service.read(c) for c in rows[:limit]],
        next_cursor=encode_cursor(rows[limit - 1].id) if len(rows) > limit else None,
    )


@router.get("/{campaign_id}", response_model=CampaignRead)
async def get_campaign(
    campaign_id: str, session: SessionDep, service: Campaigns, principal: Reader
) -> CampaignRead:
    """A campaign, with ``seconds_remaining`` while it is scheduled or active. Members do
    not see drafts."""
    campaign = await service.get(session, campaign_id)
    if principal.role is Role.MEMBER and campaign.status == "draft":
        raise CampaignNotFound(f"Campaign {campaign_id} does not exist")
    return service.read(campaign)


@router.patch("/{campaign_id}", response_model=CampaignRead)
async def update_campaign(
    campaign_id: str, body: CampaignUpdate, session: SessionDep, service: Campaigns, _: Writer
) -> CampaignRead:
    """Edit a draft or scheduled campaign (name, window, rules, budget...); 409 once active."""
    return service.read(await service.update(session, campaign_id, body))


@router.post("/{campaign_id}/launch", response_model=CampaignRead)
async def launch_campaign(
    campaign_id: str, session: SessionDep, service: Campaigns, _: Writer
) -> CampaignRead:
    """Draft -> scheduled (or active when its start has passed). Lotteries commit their seed."""
    return service.read(await service.launch(session, campaign_id))


@router.post("/{campaign_id}/end", response_model=CampaignRead)
async def end_campaign(
    campaign_id: str, session: SessionDep, service: Campaigns, principal: Writer
) -> CampaignRead:
    """Active -> ended before its end time."""
    return service.read(await service.end(session, campaign_id, principal.subject))


@router.post("/{campaign_id}/settle", response_model=SettlementRead)
async def settle_campaign(
    campaign_id: str, session: SessionDep, service: Campaigns, _: Writer
) -> SettlementRead:
    """Ended -> settled, exactly once: pays the type's prizes within budget (events)."""
    campaign = await service.settle(session, campaign_id)
    grants = [
        g for g in await GrantRepository(session).of_campaign(campaign.id) if not g.revoked_at
    ]
    return SettlementRead(
        campaign=service.read(campaign),
        grants=len(grants),
        points=sum(g.points or 0 for g in grants),
        coupons=sum(1 for g in grants if g.kind == "coupon"),
    )


@router.post("/{campaign_id}/cancel", response_model=CampaignRead)
async def cancel_campaign(
    campaign_id: str,
    session: SessionDep,
    service: Campaigns,
    _: Writer,
    body: CancelRequest | None = None,
) -> CampaignRead:
    """Cancel a campaign that is not settled; nothing more is paid."""
    reason = body.reason if body else None
    return service.read(await service.cancel(session, campaign_id, reason))


@router.get("/{campaign_id}/grants", response_model=GrantPage)
async def list_grants(
    campaign_id: str, session: SessionDep, service: Campaigns, _: Operator
) -> GrantPage:
    """What the campaign asked rewards to pay, to whom, and what was clawed back."""
    campaign = await service.get(session, campaign_id)
    rows = await GrantRepository(session).of_campaign(campaign.id)
    return GrantPage(items=[GrantRead.model_validate(g) for g in rows])


# --- participation ----------------------------------------------------------------------------


@router.post(
    "/{campaign_id}/participants",
    status_code=status.HTTP_201_CREATED,
    response_model=ParticipantRead,
)
async def join_campaign(
    campaign_id: str,
    session: SessionDep,
    service: Campaigns,
    principal: MemberSelf,
    body: ParticipantCreate | None = None,
) -> ParticipantRead:
    """The calling member joins, after the eligibility checks (window, community, segment).
    Group buys: ``group_id`` joins a group, none starts one. Trials: ``answers`` apply."""
    body = body or ParticipantCreate()
    campaign = await service.get(session, campaign_id)
    if body.group_id is not None and campaign.type != "group_buy":
        raise InvalidApplication("Only group buys take group_id", field="group_id")
    if body.answers is not None and campaign.type != "trial":
        raise InvalidApplication("Only trials take answers", field="answers")
    campaign, participant, now = await service.participate(
        session, campaign_id, principal.subject, explicit=True
    )
    if campaign.type == "group_buy":
        await group_buy.join(session, campaign, participant, body.group_id, now)
    elif campaign.type == "trial":
        await trial.apply(session, campaign, participant, body.answers)
    return ParticipantRead.model_validate(participant)


@router.patch("/{campaign_id}/participants/{member_id}", response_model=ParticipantRead)
async def select_for_trial(
    campaign_id: str,
    member_id: str,
    body: SelectionUpdate,
    session: SessionDep,
    service: Campaigns,
    _: Writer,
) -> ParticipantRead:
    """Trials: select an applicant (emits ``trial.selected``); within the trial's slots."""
    campaign = await service.get(session, campaign_id)
    if campaign.type != "trial":
        raise WrongCampaignType("Only trials select applicants")
    participant = await trial.select_member(session, campaign.id, member_id, service.clock())
    return ParticipantRead.model_validate(participant)


@router.get("/{campaign_id}/participants", response_model=ParticipantPage)
async def list_participants(
    campaign_id: str,
    session: SessionDep,
    service: Campaigns,
    principal: CurrentPrincipal,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> ParticipantPage:
    """Operators, moderators of the campaign's community, partners with ``campaigns:read``."""
    campaign = await service.get(session, campaign_id)
    if not await service.can_see_participants(session, principal, campaign):
        raise Forbidden("Only operators and the community's moderators see participants")
    rows = await ParticipantRepository(session).page(campaign.id, _after(cursor), limit + 1)
    return ParticipantPage(
        items=[ParticipantRead.model_validate(p) for p in rows[:limit]],
        next_cursor=encode_cursor(rows[limit - 1].member_id) if len(rows) > limit else None,
    )


@router.post(
    "/{campaign_id}/checkins", status_code=status.HTTP_201_CREATED, response_model=CheckinRead
)
async def check_in(
    campaign_id: str,
    session: SessionDep,
    service: Campaigns,
    principal: MemberSelf,
    body: CheckinCreate | None = None,
) -> CheckinRead:
    """Check in for today (campaign's time zone) or, with a make-up card, a missed day."""
    campaign, participant, now = await service.participate(
        session, campaign_id, principal.subject, types=("checkin",)
    )
    return await checkin.check_in(session, campaign, participant, body or CheckinCreate(), now)


@router.get("/{campaign_id}/checkins", response_model=CheckinList)
async def list_checkins(
    campaign_id: str,
    session: SessionDep,
    service: Campaigns,
    principal: CurrentPrincipal,
    member_id: Annotated[str | None, Query(max_length=36)] = None,
) -> CheckinList:
    """A member's check-ins (their own; operators name ``member_id``)."""
    campaign = await service.get(session, campaign_id)
    target = member_id or principal.subject
    if not principal.can_act_for(target):
        raise Forbidden("Members see their own check-ins only")
    rows = await checkin.history(session, campaign.id, target)
    return CheckinList(items=[CheckinDay.model_validate(r) for r in rows])


@router.post(
    "/{campaign_id}/entries", status_code=status.HTTP_201_CREATED, response_model=EntryRead
)
async def submit_entry(
    campaign_id: str,
    request: Request,
    session: SessionDep,
    service: Campaigns,
    principal: MemberSelf,
    body: EntryCreate | None = None,
) -> EntryRead:
    """Enter a lottery or claim a flash-sale coupon (no body), or enter a UGC contest
    (``post_id`` of the member's own published post). A sold-out sale is 409 ``sold-out``.
    Lotteries priced in points spend them in rewards (``tickets`` to buy; 409
    ``insufficient-points``; 503 leaves the entry pending, retried with the same
    ``Idempotency-Key`` or by the service itself); check-in lotteries turn check-ins into
    tickets (409 ``no-tickets-earned``)."""
    campaign, participant, now = await service.participate(
        session, campaign_id, principal.subject, types=("lottery", "ugc", "flash_sale")
    )
    body = body or EntryCreate()
    if body.tickets is not None and campaign.type != "lottery":
        raise InvalidApplication("Only lotteries take tickets", field="tickets")
    if campaign.type == "flash_sale":
        return await flash_sale.claim(session, campaign, participant, now)
    if campaign.type == "lottery":
        if LotteryRules.model_validate(campaign.rules).entry == "points":
            key = request.headers.get("idempotency-key")
            entry = await lottery.buy(
                session, service.rewards, campaign, participant, body.tickets, key, now
            )
        else:
            entry = await lottery.enter(session, campaign, participant, body.tickets, now)
    else:
        entry = await ugc.enter(session, campaign, participant, body.post_id, now)
    return EntryRead.model_validate(entry)


@router.get("/{campaign_id}/entries", response_model=EntryPage)
async def list_entries(
    campaign_id: str, session: SessionDep, service: Campaigns, _: Reader
) -> EntryPage:
    """Entries; in UGC contests ranked by their blended score."""
    campaign = await service.get(session, campaign_id)
    if campaign.type == "ugc":
        return EntryPage(items=await ugc.ranked(session, campaign))
    if campaign.type not in ("lottery", "flash_sale"):
        raise WrongCampaignType(f"A {campaign.type} campaign has no entries")
    stmt = select(Entry).where(Entry.campaign_id == campaign.id).order_by(Entry.id)
    # Entries waiting on their points spend are shown with status "pending".
    rows = (await session.scalars(stmt)).all()
    return EntryPage(items=[EntryRead.model_validate(r) for r in rows])


@router.patch("/{campaign_id}/entries/{entry_id}", response_model=EntryRead)
async def judge_entry(
    campaign_id: str,
    entry_id: str,
    body: EntryJudgement,
    session: SessionDep,
    service: Campaigns,
    _: Operator,
) -> EntryRead:
    """Judges' score (0-100) of a UGC entry, blended by the contest's ``judge_weight``."""
    campaign = await service.get(session, campaign_id)
    if campaign.type != "ugc":
        raise WrongCampaignType("Only UGC contest entries are judged")
    return EntryRead.model_validate(await ugc.judge(session, campaign, entry_id, body.judge_score))


@router.post("/{campaign_id}/votes", status_code=status.HTTP_201_CREATED, response_model=VoteRead)
async def cast_vote(
    campaign_id: str,
    body: VoteCreate,
    session: SessionDep,
    service: Campaigns,
    principal: MemberSelf,
) -> VoteRead:
    """Vote for an entry: daily quota, one vote per entry, never for your own."""
    campaign, participant, now = await service.participate(
        session, campaign_id, principal.subject, types=("ugc",)
    )
    return await ugc.vote(session, campaign, participant, body.entry_id, now)


@router.get("/{campaign_id}/votes", response_model=VoteFlagPage)
async def vote_flags(
    campaign_id: str, session: SessionDep, service: Campaigns, principal: CurrentPrincipal
) -> VoteFlagPage:
    """Vote-ring signals for review: pairs of members who voted for each other's entries."""
    campaign = await service.get(session, campaign_id)
    if not await service.can_see_participants(session, principal, campaign):
        raise Forbidden("Only operators and the community's moderators review votes")
    return VoteFlagPage(
        items=[VoteFlagRead.model_validate(f) for f in await ugc.flags(session, campaign.id)]
    )


@router.post("/{campaign_id}/draws", status_code=status.HTTP_201_CREATED, response_model=DrawRead)
async def draw_lottery(
    campaign_id: str, session: SessionDep, service: Campaigns, _: Writer
) -> DrawRead:
    """Reveal the seed and compute the winners of an ended lottery (once)."""
    campaign = await service.get(session, campaign_id)
    if campaign.type != "lottery":
        raise WrongCampaignType("Only lotteries draw")
    await lottery.draw(session, campaign, service.clock())
    return await lottery.view(session, campaign)


@router.get("/{campaign_id}/draws", response_model=DrawRead)
async def get_draw(
    campaign_id: str, session: SessionDep, service: Campaigns, _: Reader
) -> DrawRead:
    """Everything needed to verify a draw: seed hash, entries, and after the draw the seed."""
    campaign = await service.get(session, campaign_id)
    if campaign.type != "lottery":
        raise WrongCampaignType("Only lotteries draw")
    return await lottery.view(session, campaign)


@router.get("/{campaign_id}/leaderboard", response_model=LeaderboardRead)
async def leaderboard(
    campaign_id: str,
    session: SessionDep,
    service: Campaigns,
    _: Reader,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> LeaderboardRead:
    """Top participants by score, with the campaign's countdown."""
    campaign = await service.get(session, campaign_id)
    return await service.leaderboard(session, campaign, limit)
