"""Request and response bodies of the rewards API."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from shared.web import JsonInt

CODE_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# -- accounts and ledger ---------------------------------------------------------------


class AccountRead(Output):
    member_id: str
    available: int
    pending: int
    lifetime: int
    tier: str | None = Field(None, description="Code of the member's fan tier.")
    tier_review_at: datetime | None = None


class LineRead(Output):
    account: str = Field(description="available/pending for the member, else the system account.")
    member_id: str | None
    lot_id: str | None
    amount: int


class EntryRead(Output):
    id: str
    kind: str
    reason_code: str
    reason: str
    amount: int
    available_delta: int
    pending_delta: int
    source: str
    rule_id: str | None
    operator_id: str | None
    occurred_at: datetime
    created_at: datetime
    lines: list[LineRead] = Field(default_factory=list)


class EntryPage(BaseModel):
    items: list[EntryRead]
    next_cursor: str | None


class AdjustmentCreate(Input):
    amount: int = Field(description="Signed: positive credits, negative debits; never zero.")
    reason: str = Field(min_length=3, max_length=500)

    @model_validator(mode="after")
    def _not_zero(self) -> AdjustmentCreate:
        if self.amount == 0 or abs(self.amount) > 10_000_000:
            raise ValueError("amount must be non-zero and at most 10,000,000 either way")
        return self


class ServiceSpendCreate(Input):
    """Another service spends a member's points, e.g. a lottery entry priced in points."""

    amount: int = Field(gt=0, le=10_000_000)
    reason_code: str = Field(min_length=1, max_length=60, pattern=r"^[a-z][a-z0-9_.]*$")
    reason: str = Field(min_length=3, max_length=500)


class PostingRead(BaseModel):
    entry_id: str
    amount: int
    account: AccountRead


class AuditRead(BaseModel):
    balanced: bool
    accounts_checked: int
    entries_checked: int
    mismatches: list[dict[str, Any]]
    unbalanced_entries: list[str]
    system_accounts: dict[str, int]
    checked_at: datetime


# -- earning rules and tiers -----------------------------------------------------------


class EarningRuleCreate(Input):
    name: str = Field(min_length=1, max_length=120)
    event_type: str = Field(min_length=1, max_length=100)
    points: int = Field(gt=0, le=1_000_000)
    daily_cap: int | None = Field(None, gt=0, description="Most points per member per UTC day.")
    weekly_cap: int | None = Field(None, gt=0, description="Most points per member per ISO week.")
    community_id: str | None = Field(None, max_length=36, description="Overrides the global rule.")
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    tier_multipliers: dict[str, float] = Field(
        default_factory=dict, max_length=50, description="Tier code -> multiplier, e.g. 1.5."
    )
    hold_h: float | None = Field(None, ge=0, le=24 * 365, description="Pending hold in hours.")

    @model_validator(mode="after")
    def _check(self) -> EarningRuleCreate:
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        if any(m <= 0 or m > 100 for m in self.tier_multipliers.values()):
            raise ValueError("tier multipliers must be in (0, 100]")
        return self


class EarningRuleRead(Output):
    id: str
    name: str
    event_type: str
    points: int
    daily_cap: int | None
    weekly_cap: int | None
    community_id: str | None
    starts_at: datetime | None
    ends_at: datetime | None
    tier_multipliers: dict[str, float]
    hold_h: float | None
    active: bool
    created_at: datetime


class TierCreate(Input):
    code: str = Field(pattern=CODE_PATTERN, description="e.g. core_fan")
    name: str = Field(min_length=1, max_length=80)
    threshold: JsonInt = Field(
        ge=0, le=1_000_000_000, description="Points needed to reach the tier."
    )


class TierRead(Output):
    code: str
    name: str
    threshold: int


class TierList(BaseModel):
    basis: str = Field(description="lifetime or rolling.")
    rolling_window_days: int | None
    review_days: int
    items: list[TierRead]


# -- coupons ---------------------------------------------------------------------------


class CouponKind(StrEnum):
    PERCENT_OFF = "percent_off"
    AMOUNT_OFF = "amount_off"
    FREE_GIFT = "free_gift"
    FREE_SHIPPING = "free_shipping"


class CouponTemplateCreate(Input):
    name: str = Field(min_length=1, max_length=120)
    kind: CouponKind
    value: int | None = Field(
        None,
        gt=0,
        le=100_000_000,
        description="Percent (percent_off) or minor units (amount_off).",
    )
    gift: str | None = Field(None, max_length=200, description="What free_gift gives.")
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    total_stock: int | None = Field(None, ge=0, le=10_000_000)
    per_member_limit: int | None = Field(None, gt=0, le=1000)
    segment_id: str | None = Field(
        None, max_length=36, description="Recorded; enforced through the members service later."
    )

    @model_validator(mode="after")
    def _check(self) -> CouponTemplateCreate:
        if self.kind is CouponKind.PERCENT_OFF and not (self.value and self.value <= 100):
            raise ValueError("percent_off needs a value between 1 and 100")
        if self.kind is CouponKind.AMOUNT_OFF and not self.value:
            raise ValueError("amount_off needs a value")
        if self.kind is CouponKind.FREE_GIFT and not self.gift:
            raise ValueError("free_gift needs a gift")
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        return self


class CouponTemplateRead(Output):
    id: str
    name: str
    kind: str
    value: int | None
    gift: str | None
    valid_from: datetime | None
    valid_until: datetime | None
    total_stock: int | None
    remaining_stock: int | None
    per_member_limit: int | None
    segment_id: str | None
    created_at: datetime


class CouponTemplatePage(BaseModel):
    items: list[CouponTemplateRead]
    next_cursor: str | None


class CodeGeneration(Input):
    count: int = Field(gt=0, le=200_000)


class CodeGenerationRead(BaseModel):
    template_id: str
    generated: int
    codes: list[str] = Field(description="At most the first 1,000 codes generated.")


class CouponIssue(Input):
    member_id: str = Field(min_length=1, max_length=36)
    campaign_id: str | None = Field(None, max_length=36)


class CouponRead(Output):
    id: str
    code: str
    template_id: str
    status: str
    member_id: str | None
    campaign_id: str | None
    order_ref: str | None
    issued_at: datetime | None
    redeemed_at: datetime | None


class CouponValidation(BaseModel):
    coupon: CouponRead
    template: CouponTemplateRead
    valid: bool
    reason: str | None


class CouponRedeem(Input):
    order_ref: str | None = Field(None, max_length=120)


# -- catalogue and redemptions ---------------------------------------------------------


class ItemKind(StrEnum):
    PHYSICAL = "physical"
    COUPON = "coupon"
    DIGITAL = "digital"


class CatalogItemCreate(Input):
    name: str = Field(min_length=1, max_length=120)
    description: str | None = Field(None, max_length=2000)
    kind: ItemKind
    points_price: int = Field(gt=0, le=100_000_000)
    stock: int | None = Field(None, ge=0, le=100_000_000, description="None: unlimited.")
    coupon_template_id: str | None = Field(None, max_length=36)

    @model_validator(mode="after")
    def _check(self) -> CatalogItemCreate:
        if (self.kind is ItemKind.COUPON) != (self.coupon_template_id is not None):
            raise ValueError("coupon items, and only they, name a coupon_template_id")
        return self


class CatalogItemRead(Output):
    id: str
    name: str
    description: str | None
    kind: str
    points_price: int
    stock: int | None
    coupon_template_id: str | None
    active: bool
    created_at: datetime


class CatalogPage(BaseModel):
    items: list[CatalogItemRead]
    next_cursor: str | None


class RedemptionCreate(Input):
    item_id: str = Field(min_length=1, max_length=36)
    quantity: int = Field(1, gt=0, le=100)
    member_id: str | None = Field(None, max_length=36, description="Operators only; else yourself.")
    shipping_address: str | None = Field(None, max_length=1000)
    note: str | None = Field(None, max_length=500)


class RedemptionRead(Output):
    id: str
    member_id: str
    item_id: str
    item_kind: str
    quantity: int
    points: int
    entry_id: str | None
    coupon_code: str | None
    shipping_address: str | None
    note: str | None
    created_at: datetime


class RedemptionPage(BaseModel):
    items: list[RedemptionRead]
    next_cursor: str | None
