"""Events published by the campaigns service on ``community.campaigns.v1``."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import Field

from shared.events.registry import EventData, event_type
from shared.events.topics import CAMPAIGNS


@event_type("campaign.checked_in", topic=CAMPAIGNS)
class CampaignCheckedIn(EventData):
    """A member checked in for a day of a check-in challenge."""

    campaign_id: str
    community_id: str | None = None
    member_id: str
    day: date = Field(description="The local day checked in for, in the campaign's time zone.")
    streak: int
    total: int
    checked_in_at: datetime


@event_type("campaign.reward_granted", topic=CAMPAIGNS)
class CampaignRewardGranted(EventData):
    """A campaign awarded a member a prize; rewards pays it exactly once per ``grant_id``."""

    grant_id: str = Field(description="Unique per grant; rewards dedupes on it.")
    campaign_id: str
    member_id: str
    kind: str = Field(description="points, coupon or item.")
    points: int | None = Field(None, gt=0)
    coupon_template_id: str | None = None
    item_id: str | None = None
    reason: str
    granted_at: datetime


class CampaignEvent(EventData):
    campaign_id: str
    community_id: str
    type: str = Field(description="checkin, referral, lottery or ugc.")


@event_type("campaign.created", topic=CAMPAIGNS)
class CampaignCreated(CampaignEvent):
    """An operator or partner drafted a campaign."""

    name: str
    objective: str = Field(description="awareness, engagement, acquisition or sales.")
    segment_id: str | None = None
    starts_at: datetime
    ends_at: datetime
    created_by: str
    created_at: datetime


@event_type("campaign.launched", topic=CAMPAIGNS)
class CampaignLaunched(CampaignEvent):
    """A draft was launched: scheduled for its start, or active at once."""

    status: str = Field(description="scheduled or active.")
    starts_at: datetime
    ends_at: datetime
    seed_hash: str | None = Field(
        None, description="Lotteries: sha256 (hex) of the draw seed, committed before any entry."
    )
    launched_at: datetime


@event_type("campaign.started", topic=CAMPAIGNS)
class CampaignStarted(CampaignEvent):
    """A scheduled campaign reached its start time and is open for participation."""

    started_at: datetime


@event_type("campaign.ended", topic=CAMPAIGNS)
class CampaignEnded(CampaignEvent):
    """A campaign closed for participation (its end time came, or an operator ended it)."""

    ended_at: datetime
    by: str = Field(description="schedule or the id of who ended it.")


@event_type("campaign.settled", topic=CAMPAIGNS)
class CampaignSettled(CampaignEvent):
    """Settlement ran once: the grants it asked rewards to pay."""

    grants: int
    points: int
    coupons: int
    settled_at: datetime


@event_type("campaign.cancelled", topic=CAMPAIGNS)
class CampaignCancelled(CampaignEvent):
    """A campaign was cancelled before settlement; nothing more is paid."""

    reason: str | None = None
    cancelled_at: datetime


@event_type("campaign.joined", topic=CAMPAIGNS)
class CampaignJoined(EventData):
    """A member joined a campaign (first participation, after the eligibility checks)."""

    campaign_id: str
    community_id: str
    member_id: str
    joined_at: datetime


@event_type("campaign.completed", topic=CAMPAIGNS)
class CampaignCompleted(EventData):
    """A member completed a campaign's goal (e.g. N check-ins)."""

    campaign_id: str
    member_id: str
    completed_at: datetime


@event_type("campaign.entry_submitted", topic=CAMPAIGNS)
class CampaignEntrySubmitted(EventData):
    """A member entered a lottery or a UGC contest (``post_id`` for UGC entries)."""

    campaign_id: str
    entry_id: str
    member_id: str
    post_id: str | None = None
    tickets: int = Field(1, ge=1, description="Lotteries: the entry's weight in the draw.")
    submitted_at: datetime


@event_type("campaign.voted", topic=CAMPAIGNS)
class CampaignVoted(EventData):
    """A member voted for a UGC contest entry."""

    campaign_id: str
    entry_id: str
    voter_id: str
    entry_author_id: str
    voted_at: datetime


@event_type("campaign.winner_selected", topic=CAMPAIGNS)
class CampaignWinnerSelected(EventData):
    """A member won a place in a contest or a lottery at settlement or draw."""

    campaign_id: str
    member_id: str
    rank: int = Field(ge=1)
    entry_id: str | None = None
    selected_at: datetime


@event_type("lottery.draw_published", topic=CAMPAIGNS)
class LotteryDrawPublished(EventData):
    """A lottery's seed was revealed and its winners computed; anyone can recompute them."""

    campaign_id: str
    seed: str = Field(description="The revealed seed; sha256(seed) equals the committed hash.")
    seed_hash: str
    entry_ids: list[str] = Field(description="Every entry, sorted, as the draw saw them.")
    entry_tickets: list[int] | None = Field(
        None, description="Tickets (weight) of each entry, in the order of entry_ids."
    )
    winner_entry_ids: list[str]
    algorithm: str
    drawn_at: datetime


@event_type("campaign.reward_revoked", topic=CAMPAIGNS)
class CampaignRewardRevoked(EventData):
    """A grant is clawed back (e.g. the referred invitee was erased within the hold period).

    Rewards reverses the grant named ``grant_id`` once: it debits the points or voids the
    coupon it issued for that grant.
    """

    grant_id: str = Field(description="The grant of ``campaign.reward_granted`` to reverse.")
    campaign_id: str
    member_id: str
    kind: str
    points: int | None = Field(None, gt=0)
    coupon_template_id: str | None = None
    reason: str
    revoked_at: datetime


@event_type("groupbuy.formed", topic=CAMPAIGNS)
class GroupBuyFormed(EventData):
    """A group of a group buy reached its size; its members get the group's coupon."""

    campaign_id: str
    group_id: str
    member_ids: list[str]
    formed_at: datetime


@event_type("groupbuy.failed", topic=CAMPAIGNS)
class GroupBuyFailed(EventData):
    """A group did not reach its size before the campaign was settled."""

    campaign_id: str
    group_id: str
    member_ids: list[str]
    failed_at: datetime


@event_type("trial.selected", topic=CAMPAIGNS)
class TrialSelected(EventData):
    """A member was selected for a product trial and is asked for a review post."""

    campaign_id: str
    community_id: str
    member_id: str
    review_due_at: datetime = Field(description="By when the review post is expected.")
    selected_at: datetime
