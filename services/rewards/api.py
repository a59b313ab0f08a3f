"""Rewards HTTP routes: parse, authorise, call the service, shape the reply.

Members see and spend only their own account; operators see everything;
partners need ``rewards:read`` or ``rewards:write``.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from services.rewards.ledger import Posting
from services.rewards.models import Account
from services.rewards.redemptions import RedemptionDesk, RedemptionRequest
from services.rewards.schemas import (
    AccountRead,
    AdjustmentCreate,
    AuditRead,
    CatalogItemCreate,
    CatalogItemRead,
    CatalogPage,
    CodeGeneration,
    CodeGenerationRead,
    CouponIssue,
    CouponRead,
    CouponRedeem,
    CouponTemplateCreate,
    CouponTemplatePage,
    CouponTemplateRead,
    CouponValidation,
    EarningRuleCreate,
    EarningRuleRead,
    EntryPage,
    EntryRead,
    LineRead,
    PostingRead,
    RedemptionCreate,
    RedemptionPage,
    RedemptionRead,
    ServiceSpendCreate,
    TierCreate,
    TierList,
    TierRead,
)
from services.rewards.service import RewardsService
from shared import idempotency
from shared.auth import CurrentPrincipal, OperatorPrincipal, Principal, Role, require_scope
from shared.errors import Forbidden, Unprocessable
from shared.observability import traceparent_var
from shared.web import IdempotencyKey, RequiredIdempotencyKey, SessionDep, TransactionalRoute


async def get_rewards(request: Request) -> RewardsService:
    rewards: RewardsService = request.app.state.rewards
    return rewards


RewardsDep = Annotated[RewardsService, Depends(get_rewards)]


async def get_redemption_desk(request: Request) -> RedemptionDesk:
    desk: RedemptionDesk = request.app.state.redemptions
    return desk


RedemptionDeskDep = Annotated[RedemptionDesk, Depends(get_redemption_desk)]
ReaderPrincipal = Annotated[Principal, Depends(require_scope("rewards:read"))]
WriterPrincipal = Annotated[Principal, Depends(require_scope("rewards:write"))]
# Services only: no staff role, and internal routes are never proxied by the gateway.
SpenderPrincipal = Annotated[Principal, Depends(require_scope("points:spend", staff=()))]
Cursor = Annotated[str | None, Query(max_length=200)]
Limit = Annotated[int, Query(ge=1, le=200)]


def ensure_reads(principal: Principal, member_id: str) -> None:
    if principal.can_act_for(member_id):
        return
    if principal.role is Role.PARTNER and principal.has_scope("rewards:read"):
        return
    raise Forbidden("Members see only their own rewards account")


accounts = APIRouter(prefix="/v1/accounts", tags=["rewards"], route_class=TransactionalRoute)
rules = APIRouter(prefix="/v1/earning-rules", tags=["rewards"], route_class=TransactionalRoute)
tiers = APIRouter(prefix="/v1/tiers", tags=["rewards"], route_class=TransactionalRoute)
coupons = APIRouter(prefix="/v1/coupons", tags=["rewards"], route_class=TransactionalRoute)
catalog = APIRouter(prefix="/v1/catalog", tags=["rewards"], route_class=TransactionalRoute)
redemptions = APIRouter(prefix="/v1/redemptions", tags=["rewards"], route_class=TransactionalRoute)


def account_read(member_id: str, account: Account | None) -> AccountRead:
    if account is None:
        return AccountRead(member_id=member_id, available=0, pending=0, lifetime=0)
    return AccountRead(
        member_id=member_id,
        available=account.available,
        pending=account.pending,
        lifetime=account.lifetime,
        tier=account.tier_code,
        tier_review_at=account.tier_review_at,
    )


def posting_read(member_id: str, posting: Posting) -> PostingRead:
    balance = posting.balance
    return PostingRead(
        entry_id=posting.entry_id,
        amount=posting.amount,
        account=AccountRead(
            member_id=member_id,
            available=balance.available,
            pending=balance.pending,
            lifetime=balance.lifetime,
            tier=balance.tier_code,
        ),
    )


# -- accounts ---------------------------------------------------------------------------


@accounts.get("/audit", response_model=AuditRead)
async def audit_ledger(session: SessionDep, rewards: RewardsDep, _: OperatorPrincipal) -> AuditRead:
    """Prove that every stored balance equals the sum of its ledger lines and lots."""
    return AuditRead.model_validate(await rewards.reader.audit(session))


@accounts.get("/{member_id}", response_model=AccountRead)
async def get_account(
    member_id: str, session: SessionDep, rewards: RewardsDep, principal: CurrentPrincipal
) -> AccountRead:
    """Balance (available and pending), lifetime points and fan tier."""
    ensure_reads(principal, member_id)
    return account_read(member_id, await rewards.ledger.get_account(session, member_id))


@accounts.get("/{member_id}/entries", response_model=EntryPage)
async def list_entries(
    member_id: str,
    session: SessionDep,
    rewards: RewardsDep,
    principal: CurrentPrincipal,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> EntryPage:
    """The member's ledger, newest first, each entry with its balancing lines."""
    ensure_reads(principal, member_id)
    entries, next_cursor = await rewards.reader.entries(session, member_id, cursor, limit)
    lines = await rewards.reader.lines_of(session, [entry.id for entry in entries])
    items = []
    for entry in entries:
        read = EntryRead.model_validate(entry)
        read.lines = [LineRead.model_validate(line) for line in lines if line.entry_id == entry.id]
        items.append(read)
    return EntryPage(items=items, next_cursor=next_cursor)


@accounts.post(
    "/{member_id}/adjustments", status_code=status.HTTP_201_CREATED, response_model=PostingRead
)
async def adjust_points(
    member_id: str,
    body: AdjustmentCreate,
    session: SessionDep,
    rewards: RewardsDep,
    operator: OperatorPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> PostingRead:
    """An operator's manual credit or debit with a reason; emits ``points.adjusted``."""
    source = f"adjustment:{operator.subject}:{idempotency_key or uuid.uuid4()}"
    posting = await rewards.ledger.adjust(
        session,
        member_id=member_id,
        amount=body.amount,
        reason=body.reason,
        operator_id=operator.subject,
        source=source,
    )
    return posting_read(member_id, posting)


# -- earning rules and tiers ------------------------------------------------------------


@rules.post("", status_code=status.HTTP_201_CREATED, response_model=EarningRuleRead)
async def create_rule(
    body: EarningRuleCreate, session: SessionDep, rewards: RewardsDep, _: OperatorPrincipal
) -> EarningRuleRead:
    """Pay ``points`` for each consumed ``event_type`` (422 for unknown event types)."""
    return EarningRuleRead.model_validate(await rewards.earning.create_rule(session, body))


@rules.get("", response_model=list[EarningRuleRead])
async def list_rules(
    session: SessionDep, rewards: RewardsDep, _: ReaderPrincipal
) -> list[EarningRuleRead]:
    return [EarningRuleRead.model_validate(r) for r in await rewards.earning.list_rules(session)]


@rules.get("/{rule_id}", response_model=EarningRuleRead)
async def get_rule(
    rule_id: str, session: SessionDep, rewards: RewardsDep, _: ReaderPrincipal
) -> EarningRuleRead:
    return EarningRuleRead.model_validate(await rewards.earning.get_rule(session, rule_id))


@rules.post("/{rule_id}/deactivate", response_model=EarningRuleRead)
async def deactivate_rule(
    rule_id: str, session: SessionDep, rewards: RewardsDep, _: OperatorPrincipal
) -> EarningRuleRead:
    """Stop a rule paying; entries that name it stay."""
    return EarningRuleRead.model_validate(await rewards.earning.deactivate(session, rule_id))


@tiers.post("", status_code=status.HTTP_201_CREATED, response_model=TierRead)
async def create_tier(
    body: TierCreate, session: SessionDep, rewards: RewardsDep, _: OperatorPrincipal
) -> TierRead:
    return TierRead.model_validate(await rewards.tiers.create(session, body))


@tiers.get("", response_model=TierList)
async def list_tiers(session: SessionDep, rewards: RewardsDep, _: CurrentPrincipal) -> TierList:
    """The tier ladder and how it is measured (lifetime points by default)."""
    settings = rewards.settings
    return TierList(
        basis=settings.tier_basis,
        rolling_window_days=(
            settings.tier_rolling_window_days if settings.tier_basis == "rolling" else None
        ),
        review_days=settings.tier_review_days,
        items=[TierRead.model_validate(t) for t in await rewards.tiers.list(session)],
    )


# -- coupons ----------------------------------------------------------------------------


@coupons.post("", status_code=status.HTTP_201_CREATED, response_model=CouponTemplateRead)
async def create_template(
    body: CouponTemplateCreate, session: SessionDep, rewards: RewardsDep, _: OperatorPrincipal
) -> CouponTemplateRead:
    """A coupon template; ``segment_id`` is recorded (enforced via members later)."""
    return CouponTemplateRead.model_validate(await rewards.coupons.create_template(session, body))


@coupons.get("", response_model=CouponTemplatePage)
async def list_templates(
    session: SessionDep,
    rewards: RewardsDep,
    _: ReaderPrincipal,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> CouponTemplatePage:
    rows, next_cursor = await rewards.coupons.list_templates(session, cursor, limit)
    return CouponTemplatePage(
        items=[CouponTemplateRead.model_validate(t) for t in rows], next_cursor=next_cursor
    )


@coupons.post(
    "/templates/{template_id}/codes",
    status_code=status.HTTP_201_CREATED,
    response_model=CodeGenerationRead,
)
async def generate_codes(
    template_id: str,
    body: CodeGeneration,
    session: SessionDep,
    rewards: RewardsDep,
    _: OperatorPrincipal,
) -> CodeGenerationRead:
    """Bulk-generate unissued codes (up to 200,000 per call)."""
    codes = await rewards.coupons.generate(session, template_id, body.count)
    return CodeGenerationRead(template_id=template_id, generated=len(codes), codes=codes[:1000])


@coupons.post(
    "/templates/{template_id}/issue", status_code=status.HTTP_201_CREATED, response_model=CouponRead
)
async def issue_coupon(
    template_id: str,
    body: CouponIssue,
    session: SessionDep,
    rewards: RewardsDep,
    principal: WriterPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> CouponRead:
    """Issue a code to a member (stock and per-member limit enforced); ``coupon.issued``."""
    source = f"issue:{principal.subject}:{idempotency_key}" if idempotency_key else None
    coupon = await rewards.coupons.issue(
        session, template_id, body.member_id, source=source, campaign_id=body.campaign_id
    )
    return CouponRead.model_validate(coupon)


@coupons.get("/{code}", response_model=CouponValidation)
async def validate_coupon(
    code: str, session: SessionDep, rewards: RewardsDep, principal: CurrentPrincipal
) -> CouponValidation:
    """Whether a code can be redeemed now, and why not."""
    _require_coupon_access(principal, write=False)
    coupon, template, reason = await rewards.coupons.validate(session, code, principal)
    return CouponValidation(
        coupon=CouponRead.model_validate(coupon),
        template=CouponTemplateRead.model_validate(template),
        valid=reason is None,
        reason=reason,
    )


@coupons.post("/{code}/redeem", response_model=CouponRead)
async def redeem_coupon(
    code: str,
    session: SessionDep,
    rewards: RewardsDep,
    principal: CurrentPrincipal,
    body: CouponRedeem | None = None,
) -> CouponRead:
    """Redeem a code exactly once (409 if used, expired or not yet valid)."""
    _require_coupon_access(principal, write=True)
    order_ref = body.order_ref if body else None
    return CouponRead.model_validate(
        await rewards.coupons.redeem(session, code, principal, order_ref)
    )


@coupons.post("/{code}/refund", response_model=CouponRead)
async def refund_coupon(
    code: str, session: SessionDep, rewards: RewardsDep, _: WriterPrincipal
) -> CouponRead:
    """The order was refunded: the redeemed code becomes usable again."""
    return CouponRead.model_validate(await rewards.coupons.refund(session, code))


def _require_coupon_access(principal: Principal, *, write: bool) -> None:
    if principal.role in (Role.MEMBER, Role.OPERATOR):
        return
    scope = "rewards:write" if write else "rewards:read"
    if principal.role is Role.PARTNER and principal.has_scope(scope):
        return
    raise Forbidden(f"This action needs the scope {scope!r}")


# -- catalogue and redemptions -----------------------------------------------------------


@catalog.post("", status_code=status.HTTP_201_CREATED, response_model=CatalogItemRead)
async def create_item(
    body: CatalogItemCreate, session: SessionDep, rewards: RewardsDep, _: OperatorPrincipal
) -> CatalogItemRead:
    return CatalogItemRead.model_validate(await rewards.catalog.create_item(session, body))


@catalog.get("", response_model=CatalogPage)
async def list_items(
    session: SessionDep,
    rewards: RewardsDep,
    principal: CurrentPrincipal,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> CatalogPage:
    rows, next_cursor = await rewards.catalog.list_items(
        session, cursor, limit, active_only=not principal.is_operator
    )
    return CatalogPage(
        items=[CatalogItemRead.model_validate(i) for i in rows], next_cursor=next_cursor
    )


@catalog.get("/{item_id}", response_model=CatalogItemRead)
async def get_item(
    item_id: str, session: SessionDep, rewards: RewardsDep, _: CurrentPrincipal
) -> CatalogItemRead:
    return CatalogItemRead.model_validate(await rewards.catalog.get_item(session, item_id))


# Not a TransactionalRoute: the key is claimed by the group-commit batch's transaction.
spending = APIRouter(prefix="/v1/redemptions", tags=["rewards"])


@spending.post("", status_code=status.HTTP_201_CREATED, response_model=RedemptionRead)
async def redeem_reward(
    body: RedemptionCreate,
    request: Request,
    desk: RedemptionDeskDep,
    principal: CurrentPrincipal,
    idempotency_key: RequiredIdempotencyKey,
) -> Response:
    """Spend points on a catalogue item; stock and points move in one transaction.

    Requires ``Idempotency-Key`` (a 422 names it when missing); 409 with the balance when short.
    Concurrent redemptions commit together (see ``services.rewards.redemptions``).
    """
    member_id = _redeeming_member(principal, body.member_id)
    idempotency.check_key(idempotency_key)
    fingerprint = idempotency.request_hash(
        request.method, request.url.path, request.url.query, await request.body()
    )
    return await desk.redeem(
        RedemptionRequest(
            owner=principal.subject,
            key=idempotency_key,
            fingerprint=fingerprint,
            member_id=member_id,
            item_id=body.item_id,
            quantity=body.quantity,
            shipping_address=body.shipping_address,
            note=body.note,
            traceparent=traceparent_var.get(),
        )
    )


def _redeeming_member(principal: Principal, requested: str | None) -> str:
    if principal.role is Role.MEMBER:
        if requested not in (None, principal.subject):
            raise Forbidden("Members redeem only from their own account")
        return principal.subject
    if principal.is_operator or (
        principal.role is Role.PARTNER and principal.has_scope("rewards:write")
    ):
        if requested is None:
            raise Unprocessable(
                "member_id is required when redeeming for someone else",
                errors=[{"field": "body.member_id", "message": "required", "type": "missing"}],
            )
        return requested
    raise Forbidden("This action needs the scope 'rewards:write'")


@redemptions.get("", response_model=RedemptionPage)
async def list_redemptions(
    session: SessionDep,
    rewards: RewardsDep,
    principal: CurrentPrincipal,
    member_id: Annotated[str | None, Query(max_length=36)] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> RedemptionPage:
    if principal.role is Role.MEMBER:
        member_id = principal.subject
    elif not (principal.is_operator or principal.has_scope("rewards:read")):
        raise Forbidden("This action needs the scope 'rewards:read'")
    rows, next_cursor = await rewards.catalog.list_redemptions(session, member_id, cursor, limit)
    return RedemptionPage(
        items=[RedemptionRead.model_validate(r) for r in rows], next_cursor=next_cursor
    )


# -- internal: other services, never proxied by the gateway ---------------------------

internal = APIRouter(
    prefix="/internal/v1/accounts", tags=["internal"], route_class=TransactionalRoute
)


@internal.post(
    "/{member_id}/spends",
    status_code=status.HTTP_201_CREATED,
    response_model=PostingRead,
    include_in_schema=False,
)
async def spend_for_service(
    member_id: str,
    body: ServiceSpendCreate,
    session: SessionDep,
    rewards: RewardsDep,
    caller: SpenderPrincipal,
    idempotency_key: RequiredIdempotencyKey,
) -> PostingRead:
    """Spend once per key (409 ``insufficient-points`` with the balance); emits ``points.spent``.

    The key is also the entry's source, so a retry after the key's record expired
    answers 409 ``already-posted`` instead of spending twice.
    """
    posting = await rewards.ledger.spend(
        session,
        member_id=member_id,
        amount=body.amount,
        reason_code=body.reason_code,
        reason=body.reason,
        source=f"service:{caller.subject}:{idempotency_key}",
    )
    return posting_read(member_id, posting)


# The spend route first: requests are matched against routes in this order.
routers = [spending, accounts, rules, tiers, coupons, catalog, redemptions, internal]
