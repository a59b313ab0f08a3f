"""Analytics: incremental rollups of every domain event, metrics for operators."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from services.analytics.engagement import resolve_period
from services.analytics.export import Format, reply
from services.analytics.periods import Granularity
from services.analytics.rebuild import Rebuilds
from services.analytics.schemas import (
    Activity,
    ContentMetrics,
    Funnel,
    Heatmap,
    Overview,
    RebuildCreate,
    RebuildPage,
    RebuildRead,
    Retention,
    TopContributors,
)
from services.analytics.segments import SegmentSnapshots
from services.analytics.service import SegmentsNotSupported, analytics_service
from shared.auth import OperatorPrincipal, Principal, Role, require_scope
from shared.errors import Forbidden, problem_responses
from shared.pagination import BadCursor, Cursor, Limit, decode_cursor, encode_cursor
from shared.web import IsoDate, SessionDep, TransactionalRoute

# Every metric answers ``?format=csv`` with one table as text/csv (see export.py).
CSV_RESPONSE: dict[int | str, dict[str, Any]] = {200: {"content": {"text/csv": {}}}}
router = APIRouter(
    prefix="/v1/metrics", tags=["metrics"], route_class=TransactionalRoute, responses=CSV_RESPONSE
)

MetricsReader = Annotated[
    Principal, Depends(require_scope("metrics:read", staff=(Role.OPERATOR, Role.MODERATOR)))
]
From = Annotated[IsoDate | None, Query(alias="from", description="First day (ISO date), UTC.")]
To = Annotated[IsoDate | None, Query(description="Last day (ISO date), inclusive; default today.")]
CommunityId = Annotated[
    str | None, Query(max_length=36, description="One community; all communities when absent.")
]
AsFormat = Annotated[Format, Query(alias="format", description="json, or csv for one table.")]
Table = Annotated[str | None, Query(max_length=40, description="Which table for CSV.")]
SegmentId = Annotated[
    str | None,
    Query(
        max_length=36,
        description="Only the members of this segment (members service), as evaluated at most "
        "segment_cache_s ago. Figures counted per event rather than per member are left out.",
    ),
]


async def get_segments(request: Request) -> SegmentSnapshots:
    snapshots: SegmentSnapshots = request.app.state.segments
    return snapshots


Segments = Annotated[SegmentSnapshots, Depends(get_segments)]


async def narrow(session: AsyncSession, segments: SegmentSnapshots, segment_id: str | None) -> None:
    """Bring the segment's snapshot up to date before member-level queries join on it."""
    if segment_id is not None:
        await segments.refresh(session, segment_id)


def authorise(principal: Principal, community_id: str | None) -> None:
    """Moderators read their own communities only."""
    if principal.role is Role.MODERATOR and (
        community_id is None or community_id not in principal.communities
    ):
        # Platform-wide and campaign figures span communities: operators and partners only.
        raise Forbidden("Moderators read the metrics of their own communities (community_id)")


@router.get("/overview", response_model=Overview)
async def overview(
    session: SessionDep,
    principal: MetricsReader,
    segments: Segments,
    from_: From = None,
    to: To = None,
    community_id: CommunityId = None,
    segment_id: SegmentId = None,
    granularity: Granularity = Granularity.DAY,
    fmt: AsFormat = Format.JSON,
    table: Table = None,
) -> Overview | Response:
    """Growth, activity and interaction, each with the previous period (default: 30 days).

    CSV tables: figures, series, channels.
    """
    authorise(principal, community_id)
    await narrow(session, segments, segment_id)
    period = resolve_period(from_, to)
    answer = await analytics_service.overview(
        session,
        period.start,
        period.end,
        community_id=community_id,
        granularity=granularity,
        segment_id=segment_id,
    )
    return reply(answer, fmt, table, "overview")


@router.get("/activity", response_model=Activity)
async def activity(
    session: SessionDep,
    principal: MetricsReader,
    segments: Segments,
    from_: From = None,
    to: To = None,
    community_id: CommunityId = None,
    segment_id: SegmentId = None,
    granularity: Granularity = Granularity.WEEK,
    fmt: AsFormat = Format.JSON,
    table: Table = None,
) -> Activity | Response:
    """DAU, WAU, MAU and stickiness per day; lifecycle per ``granularity``. CSV: days, lifecycle."""
    authorise(principal, community_id)
    await narrow(session, segments, segment_id)
    period = resolve_period(from_, to)
    answer = await analytics_service.activity(
        session, period, community_id, granularity, segment_id
    )
    return reply(answer, fmt, table, "activity")


@router.get("/activity-heatmap", response_model=Heatmap)
async def activity_heatmap(
    session: SessionDep,
    principal: MetricsReader,
    from_: From = None,
    to: To = None,
    community_id: CommunityId = None,
    segment_id: SegmentId = None,
    fmt: AsFormat = Format.JSON,
    table: Table = None,
) -> Heatmap | Response:
    """Actions per weekday and hour in the community's time zone; best hours to post.

    CSV tables: cells, posting_hours.
    """
    authorise(principal, community_id)
    if segment_id is not None:
        raise SegmentsNotSupported(
            "The heatmap counts actions per hour, not per member: ask without segment_id"
        )
    period = resolve_period(from_, to, default_days=28)
    answer = await analytics_service.heatmap(session, period, community_id)
    return reply(answer, fmt, table, "heatmap")


@router.get("/funnels", response_model=Funnel)
async def funnels(
    session: SessionDep,
    principal: MetricsReader,
    segments: Segments,
    steps: Annotated[
        str | None,
        Query(
            max_length=600,
            description="Comma-separated event types in order, e.g. "
            "member.registered,post.viewed,comment.created.",
        ),
    ] = None,
    campaign_id: Annotated[str | None, Query(max_length=36)] = None,
    window_days: Annotated[int, Query(ge=1, le=90)] = 14,
    from_: From = None,
    to: To = None,
    community_id: CommunityId = None,
    segment_id: SegmentId = None,
    fmt: AsFormat = Format.JSON,
) -> Funnel | Response:
    """An ordered funnel over event types (window from the first step), or a campaign's."""
    if campaign_id is not None:
        return await campaign(session, principal, segments, campaign_id, segment_id, fmt)
    authorise(principal, community_id)
    await narrow(session, segments, segment_id)
    period = resolve_period(from_, to)
    names = [step.strip() for step in (steps or "").split(",") if step.strip()]
    answer = await analytics_service.funnel(
        session, names, period, community_id, window_days, segment_id
    )
    return reply(answer, fmt, None, "funnel")


@router.get("/retention", response_model=Retention)
async def retention(
    session: SessionDep,
    principal: MetricsReader,
    segments: Segments,
    from_: From = None,
    to: To = None,
    community_id: CommunityId = None,
    segment_id: SegmentId = None,
    weeks: Annotated[int, Query(ge=1, le=26)] = 8,
    fmt: AsFormat = Format.JSON,
) -> Retention | Response:
    """Weekly cohorts by join week (``from``..``to``): share active in week 1..``weeks``."""
    authorise(principal, community_id)
    await narrow(session, segments, segment_id)
    period = resolve_period(from_, to, default_days=56)
    answer = await analytics_service.retention(session, period, community_id, weeks, segment_id)
    return reply(answer, fmt, None, "retention")


@router.get("/top-contributors", response_model=TopContributors)
async def top_contributors(
    session: SessionDep,
    principal: MetricsReader,
    segments: Segments,
    from_: From = None,
    to: To = None,
    community_id: CommunityId = None,
    segment_id: SegmentId = None,
    half_life_days: Annotated[float, Query(gt=0, le=365)] = 14.0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    fmt: AsFormat = Format.JSON,
    table: Table = None,
) -> TopContributors | Response:
    """Decayed contributor score on ``to``; bands now and on the day before ``from``.

    CSV tables: items, movement.
    """
    authorise(principal, community_id)
    await narrow(session, segments, segment_id)
    period = resolve_period(from_, to)
    answer = await analytics_service.top_contributors(
        session, period, community_id, half_life_days, limit, segment_id
    )
    return reply(answer, fmt, table, "top-contributors")


@router.get("/content/{post_id}", response_model=ContentMetrics)
async def content(
    session: SessionDep, principal: MetricsReader, post_id: str, fmt: AsFormat = Format.JSON
) -> ContentMetrics | Response:
    """One post: views, reach, interactions, interaction rate and spread."""
    if principal.role is Role.MODERATOR:
        community_id = await analytics_service.community_of_post(session, post_id)
        if community_id is not None:
            authorise(principal, community_id)
    answer = await analytics_service.content(session, post_id)
    return reply(answer, fmt, None, "content")


@router.get("/campaigns/{campaign_id}", response_model=Funnel)
async def campaign(
    session: SessionDep,
    principal: MetricsReader,
    segments: Segments,
    campaign_id: str,
    segment_id: SegmentId = None,
    fmt: AsFormat = Format.JSON,
) -> Funnel | Response:
    """A campaign's funnel: reached -> joined -> active -> completed -> rewarded -> redeemed."""
    authorise(principal, None)  # spans communities: not for moderators
    await narrow(session, segments, segment_id)
    # "reached" is the campaign's target segment: its snapshot must be current too.
    await narrow(session, segments, await analytics_service.target_segment(session, campaign_id))
    answer = await analytics_service.campaign_funnel(session, campaign_id, segment_id)
    return reply(answer, fmt, None, "campaign")


rebuilds_router = APIRouter(
    prefix="/v1/metrics/rebuilds", tags=["metrics"], route_class=TransactionalRoute
)


async def get_rebuilds(request: Request) -> Rebuilds:
    rebuilds: Rebuilds = request.app.state.rebuilds
    return rebuilds


RebuildsDep = Annotated[Rebuilds, Depends(get_rebuilds)]


@rebuilds_router.post(
    "", status_code=202, response_model=RebuildRead, responses=problem_responses(409)
)
async def start_rebuild(
    session: SessionDep,
    response: Response,
    principal: OperatorPrincipal,
    rebuilds: RebuildsDep,
    body: Annotated[RebuildCreate | None, Body()] = None,
) -> RebuildRead:
    """Rebuild every rollup from the raw event store; poll the answer's ``id`` for progress.

    Live consumption waits until it is done; one rebuild at a time (409 otherwise).
    """
    body = body or RebuildCreate()
    rebuild = await rebuilds.start(session, principal.subject, body.batch_size, force=body.force)
    response.headers["Location"] = f"/v1/metrics/rebuilds/{rebuild.id}"
    return RebuildRead.model_validate(rebuild)


def _rebuild_cursor(cursor: str) -> tuple[datetime, str]:
    stamp, last_id = decode_cursor(cursor, 2)
    try:
        started = datetime.fromisoformat(str(stamp))
    except ValueError:
        started = None
    if started is None or started.tzinfo is None:
        raise BadCursor("The cursor is not one this API issued")
    return started, str(last_id)


@rebuilds_router.get("", response_model=RebuildPage)
async def list_rebuilds(
    session: SessionDep,
    principal: OperatorPrincipal,
    rebuilds: RebuildsDep,
    cursor: Cursor = None,
    limit: Limit = 20,
) -> RebuildPage:
    """Rebuilds, newest first."""
    after = _rebuild_cursor(cursor) if cursor is not None else None
    items = await rebuilds.page(session, after, limit + 1)
    more = len(items) > limit
    items = items[:limit]
    next_cursor = encode_cursor(items[-1].started_at.isoformat(), items[-1].id) if more else None
    return RebuildPage(
        items=[RebuildRead.model_validate(r) for r in items], next_cursor=next_cursor
    )


@rebuilds_router.get("/{rebuild_id}", response_model=RebuildRead)
async def get_rebuild(
    session: SessionDep,
    principal: OperatorPrincipal,
    rebuilds: RebuildsDep,
    rebuild_id: Annotated[str, Path(max_length=36)],
) -> RebuildRead:
    """One rebuild: state, events done of events total, when, and the error if it failed."""
    return RebuildRead.model_validate(await rebuilds.get(session, rebuild_id))
