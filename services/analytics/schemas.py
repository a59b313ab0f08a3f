from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool

from shared.web import json_integer


class MemberGrowth(BaseModel):
    total: int = Field(description="Members registered (or joined, per community) up to `to`.")
    new_in_period: int = Field(description="Members registered between `from` and `to`.")
    new_in_previous_period: int = Field(description="The same figure for the period before.")


class Figure(BaseModel):
    value: int | float
    previous: int | float = Field(description="The same figure over the previous period.")
    change_pct: float | None = Field(description="Change in percent; null when previous is 0.")


class ChannelGrowth(BaseModel):
    channel: str
    new_members: int
    previous: int


class SeriesPoint(BaseModel):
    start: date
    end: date
    new_members: int
    left: int
    erased: int
    net: int
    active_members: int = Field(description="Distinct members active in the bucket.")
    posts: int | None = Field(description="Null with a segment: counted per event, not member.")
    interactions: int | None
    views: int | None


class LifecyclePoint(BaseModel):
    start: date
    end: date
    new: int
    returning: int
    resurrecting: int
    dormant: int


class Overview(BaseModel):
    community_id: str | None
    segment_id: str | None = None
    granularity: str
    period_from: date
    period_to: date
    previous_from: date
    previous_to: date
    as_of: datetime | None = Field(description="Newest event time applied to the rollups.")
    members: MemberGrowth
    figures: dict[str, Figure]
    channels: list[ChannelGrowth]
    series: list[SeriesPoint]


class ActivityPoint(BaseModel):
    day: date
    dau: int
    wau: int
    mau: int
    stickiness: float | None


class Activity(BaseModel):
    community_id: str | None
    segment_id: str | None = None
    granularity: str
    period_from: date
    period_to: date
    as_of: datetime | None
    days: list[ActivityPoint]
    lifecycle: list[LifecyclePoint]


class PostingHour(BaseModel):
    hour: int
    posts: int
    interactions: int
    interactions_per_post: float


class HeatmapCell(BaseModel):
    weekday: int = Field(description="0 = Monday ... 6 = Sunday, local time.")
    hour: int
    actions: int


class Heatmap(BaseModel):
    community_id: str | None
    timezone: str
    period_from: date
    period_to: date
    as_of: datetime | None
    cells: list[list[int]] = Field(description="7 rows (Monday first) of 24 hourly counts.")
    peak: HeatmapCell | None
    best_posting_hours: list[PostingHour]


class FunnelStep(BaseModel):
    name: str
    members: int | None = Field(description="Null when the platform has no data for the step yet.")
    conversion_from_previous: float | None
    conversion_from_first: float | None


class Funnel(BaseModel):
    kind: str = Field(description="events or campaign.")
    campaign_id: str | None = None
    community_id: str | None = None
    segment_id: str | None = None
    period_from: date | None = None
    period_to: date | None = None
    window_days: int | None = None
    as_of: datetime | None
    steps: list[FunnelStep]


class Cohort(BaseModel):
    week_start: date
    size: int
    active: list[int | None] = Field(description="Members active in week 1..N; null = future.")
    retained: list[float | None] = Field(description="active / size, week 1..N.")


class Retention(BaseModel):
    community_id: str | None
    segment_id: str | None = None
    weeks: int
    as_of: datetime | None
    cohorts: list[Cohort]


class Contributor(BaseModel):
    rank: int
    member_id: str
    score: float
    initiated: float
    received: float
    band: str
    previous_band: str
    posts: int
    interactions_received: int
    views_received: int
    reach: int


class BandMove(BaseModel):
    from_band: str
    to_band: str
    members: int


class TopContributors(BaseModel):
    community_id: str | None
    segment_id: str | None = None
    as_of_day: date
    previous_day: date
    half_life_days: float
    as_of: datetime | None
    items: list[Contributor]
    bands: dict[str, int] = Field(description="Scored members per band on `to`.")
    movement: list[BandMove] = Field(description="Scored members by band then and now.")


class ContentMetrics(BaseModel):
    post_id: str
    community_id: str
    author_id: str | None
    post_type: str | None
    published_at: datetime | None
    views: int
    reach: int = Field(description="Unique viewers.")
    comments: int
    reactions: int
    shares: int
    answers: int
    interactions: int
    interaction_rate: float | None = Field(description="interactions / views.")
    views_via_share: int
    as_of: datetime | None


class RebuildCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    force: StrictBool = Field(
        False,
        description="Rebuild even when the rollups hold events the raw store does not "
        "(applied before it existed): those are dropped.",
    )
    batch_size: Annotated[int, Field(ge=1, le=5000), BeforeValidator(json_integer)] = Field(
        500, description="Events replayed per transaction (and per progress step)."
    )


class RebuildRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    state: Literal["running", "succeeded", "failed"]
    events_total: int = Field(description="Events in the raw store when it started.")
    events_done: int = Field(description="Events replayed so far.")
    batch_size: int
    requested_by: str
    started_at: datetime
    finished_at: datetime | None
    error: str | None


class RebuildPage(BaseModel):
    items: list[RebuildRead]
    next_cursor: str | None
