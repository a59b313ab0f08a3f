"""Request and response models of the campaigns API."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

Id = Annotated[str, Field(min_length=1, max_length=36)]
CampaignType = Literal[
    "checkin", "referral", "lottery", "ugc", "quiz", "flash_sale", "group_buy", "trial"
]


def _known_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}") from None
    return value


Zone = Annotated[str, Field(max_length=64), AfterValidator(_known_zone)]
Status = Literal["draft", "scheduled", "active", "ended", "settled", "cancelled"]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Reward(Input):
    kind: Literal["points", "coupon"]
    points: int | None = Field(None, ge=1, le=1_000_000)
    coupon_template_id: Id | None = None

    @model_validator(mode="after")
    def _complete(self) -> Reward:
        if self.kind == "points" and self.points is None:
            raise ValueError("a points reward needs points")
        if self.kind == "coupon" and self.coupon_template_id is None:
            raise ValueError("a coupon reward needs coupon_template_id")
        return self


class Milestone(Input):
    checkins: int = Field(ge=1, le=366)
    reward: Reward


class CheckinRules(Input):
    days_required: int = Field(ge=1, le=366, description="N check-ins that complete it.")
    mode: Literal["consecutive", "total"] = Field(
        "total", description="consecutive: a streak of N days; total: N days in all."
    )
    makeup_cards: int = Field(0, ge=0, le=31, description="Missed past days a member may fill.")
    milestones: list[Milestone] = Field(default_factory=list, max_length=20)
    completion_reward: Reward | None = Field(None, description="Paid at settlement.")


class ReferralRules(Input):
    activation_window_days: int = Field(
        ge=1, le=365, description="Days after the referral in which the invitee must activate."
    )
    reward: Reward = Field(description="Paid to the referrer per activated invitee.")
    per_referrer_cap: int = Field(ge=1, le=10_000)
    hold_days: int = Field(
        0, ge=0, le=365, description="Days after activation in which erasure claws back."
    )


class LotteryRules(Input):
    winners: int = Field(ge=1, le=10_000)
    prize: Reward
    max_entries_per_member: int = Field(1, ge=1, le=100)
    entry: Literal["free", "points", "checkins"] = Field(
        "free",
        description="free: one ticket per entry; points: tickets bought with points "
        "(spent in rewards); checkins: each check-in in checkin_campaign_id earns a ticket.",
    )
    points_per_ticket: int | None = Field(None, ge=1, le=1_000_000)
    checkin_campaign_id: Id | None = Field(
        None, description="checkins: the check-in challenge whose check-ins become tickets."
    )
    max_tickets_per_entry: int = Field(
        1, ge=1, le=1000, description="Tickets one entry may buy (points) or convert (checkins)."
    )

    @model_validator(mode="after")
    def _priced(self) -> LotteryRules:
        if (self.entry == "points") != (self.points_per_ticket is not None):
            raise ValueError("points_per_ticket is set exactly when entry is points")
        if (self.entry == "checkins") != (self.checkin_campaign_id is not None):
            raise ValueError("checkin_campaign_id is set exactly when entry is checkins")
        return self


class UgcRules(Input):
    winners: int = Field(ge=1, le=1000, description="Top N entries win at settlement.")
    prize: Reward
    votes_per_day: int = Field(ge=1, le=1000, description="Votes per member per local day.")
    judge_weight: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Score = (1-w) * 100 * votes / most votes + w * judges' score (0-100).",
    )
    max_entries_per_member: int = Field(1, ge=1, le=20)


class QuizRules(Input):
    post_id: Id = Field(description="The quiz post (content service) members answer.")
    winners: int = Field(ge=1, le=1000, description="Top N by score, then earliest answer.")
    prize: Reward


class FlashSaleRules(Input):
    stock: int = Field(ge=1, le=1_000_000, description="Coupons released at the start.")
    per_member_limit: int = Field(1, ge=1, le=100)
    coupon_template_id: Id


class CampaignCommon(Input):
    name: str = Field(min_length=1, max_length=200)
    objective: Literal["awareness", "engagement", "acquisition", "sales"]
    community_id: Id
    segment_id: Id | None = None
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    timezone: Zone | None = Field(
        None, description="IANA zone of local days; default: the community's."
    )
    budget_points: int | None = Field(None, ge=0, description="Most points paid in all.")
    budget_coupons: int | None = Field(None, ge=0, description="Most coupons issued in all.")

    @field_validator("ends_at")
    @classmethod
    def _after_start(cls, value: datetime, info: ValidationInfo) -> datetime:
        starts = info.data.get("starts_at")
        if starts is not None and value <= starts:
            raise ValueError("ends_at must be after starts_at")
        return value


class GroupBuyRules(Input):
    group_size: int = Field(ge=2, le=1000, description="Members a group needs to form.")
    coupon_template_id: Id = Field(description="Issued to every member of a formed group.")


class TrialRules(Input):
    slots: int = Field(ge=1, le=100_000, description="Members who get the product.")
    questions: list[Annotated[str, Field(min_length=1, max_length=500)]] = Field(
        default_factory=list, max_length=20
    )
    auto_select: Literal["none", "earliest"] = Field(
        "none", description="At settlement, fill free slots with the earliest applicants."
    )
    review_days: int = Field(14, ge=1, le=365, description="Days to post a review.")
    review_reward: Reward | None = Field(
        None, description="Paid at settlement to each selected member who posted a review."
    )


class CheckinCampaignCreate(CampaignCommon):
    type: Literal["checkin"]
    rules: CheckinRules


class ReferralCampaignCreate(CampaignCommon):
    type: Literal["referral"]
    rules: ReferralRules


class LotteryCampaignCreate(CampaignCommon):
    type: Literal["lottery"]
    rules: LotteryRules


class UgcCampaignCreate(CampaignCommon):
    type: Literal["ugc"]
    rules: UgcRules


class QuizCampaignCreate(CampaignCommon):
    type: Literal["quiz"]
    rules: QuizRules


class FlashSaleCampaignCreate(CampaignCommon):
    """The coupon budget is the stock: ``budget_coupons`` is set from ``rules.stock``."""

    type: Literal["flash_sale"]
    rules: FlashSaleRules


class GroupBuyCampaignCreate(CampaignCommon):
    type: Literal["group_buy"]
    rules: GroupBuyRules


class TrialCampaignCreate(CampaignCommon):
    type: Literal["trial"]
    rules: TrialRules


AnyCampaignCreate = (
    GroupBuyCampaignCreate
    | TrialCampaignCreate
    | CheckinCampaignCreate
    | ReferralCampaignCreate
    | LotteryCampaignCreate
    | UgcCampaignCreate
    | QuizCampaignCreate
    | FlashSaleCampaignCreate
)
CampaignCreate = Annotated[AnyCampaignCreate, Field(discriminator="type")]


RULES_BY_TYPE: dict[str, type[Input]] = {
    "checkin": CheckinRules,
    "referral": ReferralRules,
    "lottery": LotteryRules,
    "ugc": UgcRules,
    "quiz": QuizRules,
    "flash_sale": FlashSaleRules,
    "group_buy": GroupBuyRules,
    "trial": TrialRules,
}


class CampaignUpdate(Input):
    """Edits of a draft or scheduled campaign; only the fields sent change.

    ``rules`` replaces the rules whole and is checked against the campaign's type.
    """

    name: str | None = Field(None, min_length=1, max_length=200)
    objective: Literal["awareness", "engagement", "acquisition", "sales"] | None = None
    segment_id: Id | None = None
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    timezone: Zone | None = None
    rules: dict[str, Any] | None = None
    budget_points: int | None = Field(None, ge=0)
    budget_coupons: int | None = Field(None, ge=0)


class CancelRequest(Input):
    reason: str | None = Field(None, max_length=500)


class Read(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class CampaignRead(Read):
    id: str
    name: str
    type: str
    objective: str
    community_id: str
    segment_id: str | None
    status: Status
    timezone: str
    starts_at: datetime
    ends_at: datetime
    rules: dict[str, Any]
    budget_points: int | None
    budget_coupons: int | None
    spent_points: int
    spent_coupons: int
    seed_hash: str | None = Field(None, description="Lotteries: sha256 of the draw seed.")
    created_by: str
    created_at: datetime
    launched_at: datetime | None
    ended_at: datetime | None
    settled_at: datetime | None
    cancelled_at: datetime | None
    seconds_remaining: int | None = Field(
        None, description="Active: seconds until the end; scheduled: until the end too."
    )
    seconds_until_start: int | None = Field(None, description="Scheduled: seconds to start.")
    stock_left: int | None = Field(None, description="Flash sales: coupons still unclaimed.")


class CampaignPage(BaseModel):
    items: list[CampaignRead]
    next_cursor: str | None


class ParticipantCreate(Input):
    group_id: Id | None = Field(None, description="Group buys: join this group, or start one.")
    answers: list[Annotated[str, Field(max_length=2000)]] | None = Field(
        None, max_length=20, description="Trials: one answer per question."
    )


class SelectionUpdate(Input):
    selected: Literal[True] = Field(description="Trials: select this applicant.")


class ParticipantRead(Read):
    campaign_id: str
    member_id: str
    joined_at: datetime
    score: float
    streak: int
    best_streak: int
    total: int
    last_day: date | None
    makeups_used: int
    completed_at: datetime | None
    group_id: str | None = None
    answers: list[str] | None = None
    selected_at: datetime | None = None


class ParticipantPage(BaseModel):
    items: list[ParticipantRead]
    next_cursor: str | None


class CheckinCreate(Input):
    note: str | None = Field(None, max_length=1000)
    photo_url: str | None = Field(None, max_length=500, pattern=r"^https?://\S+$")
    makeup_day: date | None = Field(
        None, description="Fill a missed past day with a make-up card instead of today."
    )


class CheckinRead(BaseModel):
    campaign_id: str
    member_id: str
    day: date
    makeup: bool
    streak: int
    best_streak: int
    total: int
    completed: bool
    makeups_left: int


class CheckinDay(Read):
    day: date
    note: str | None
    photo_url: str | None
    makeup: bool
    created_at: datetime


class CheckinList(BaseModel):
    items: list[CheckinDay]


class EntryCreate(Input):
    """A lottery entry or flash-sale claim (no body), or a UGC entry (``post_id``)."""

    post_id: Id | None = Field(None, description="UGC contests: the member's published post.")
    tickets: int | None = Field(
        None, ge=1, le=1000, description="Lotteries priced in points: tickets to buy (1)."
    )


class EntryJudgement(Input):
    judge_score: float = Field(ge=0, le=100)


class EntryRead(Read):
    id: str
    campaign_id: str
    member_id: str
    post_id: str | None
    votes: int
    judge_score: float | None
    created_at: datetime
    tickets: int = Field(1, description="Lotteries: the entry's weight in the draw.")
    source: str = Field("free", description="Lotteries: free, points or checkins.")
    status: str = Field(
        "confirmed", description="pending while its points are being spent in rewards."
    )
    points_spent: int | None = None
    score: float | None = Field(None, description="UGC: the blended score that ranks entries.")
    grant_id: str | None = Field(None, description="Flash sales: the coupon grant claimed.")


class EntryPage(BaseModel):
    items: list[EntryRead]


class VoteCreate(Input):
    entry_id: Id


class VoteRead(BaseModel):
    campaign_id: str
    entry_id: str
    voter_id: str
    votes_left_today: int
    flagged: bool = Field(description="The vote completed a mutual-voting pair (vote ring).")


class VoteFlagRead(Read):
    campaign_id: str
    member_a: str
    member_b: str
    flagged_at: datetime


class VoteFlagPage(BaseModel):
    items: list[VoteFlagRead]


class DrawEntry(BaseModel):
    entry_id: str
    member_id: str
    tickets: int = Field(description="The entry's weight: how many tickets it holds.")


class DrawRead(BaseModel):
    campaign_id: str
    algorithm: str
    seed_hash: str | None
    seed: str | None = Field(None, description="Revealed at the draw.")
    winners: int
    entries: list[DrawEntry] = Field(
        description="Every confirmed entry, sorted by entry_id, with its tickets."
    )
    winner_entry_ids: list[str]
    drawn_at: datetime | None


class LeaderboardRow(BaseModel):
    rank: int
    member_id: str
    score: float
    streak: int
    total: int


class LeaderboardRead(BaseModel):
    campaign_id: str
    status: Status
    seconds_remaining: int | None
    items: list[LeaderboardRow]


class GrantRead(Read):
    id: str
    campaign_id: str
    member_id: str
    kind: str
    points: int | None
    coupon_template_id: str | None
    reason: str
    granted_at: datetime
    revoked_at: datetime | None


class GrantPage(BaseModel):
    items: list[GrantRead]


class SettlementRead(BaseModel):
    campaign: CampaignRead
    grants: int
    points: int
    coupons: int
