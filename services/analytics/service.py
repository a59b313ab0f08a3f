"""The metrics: definitions live here (and one line each in docs/metrics.md)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics.engagement import (
    EngagementMetrics,
    funnel_steps,
    ratio,
    resolve_period,
)
from services.analytics.ingest import CAMPAIGN_STEP_EVENTS, CAMPAIGN_STEPS
from services.analytics.models import PLATFORM
from services.analytics.periods import (
    MAU_DAYS,
    WAU_DAYS,
    Granularity,
    Period,
    buckets,
    change_pct,
)
from services.analytics.queries import MetricsQueries
from services.analytics.repository import GrowthRepository
from services.analytics.schemas import (
    ChannelGrowth,
    ContentMetrics,
    Figure,
    Funnel,
    Heatmap,
    HeatmapCell,
    MemberGrowth,
    Overview,
    PostingHour,
    SeriesPoint,
)
from services.analytics.windows import ACTIVE, VIEWER, VIEWERS, distinct_members
from shared.errors import NotFound, Unprocessable

DEFAULT_TIMEZONE = "Asia/Shanghai"
INTERACTIONS = ("comments", "reactions", "shares", "answers")
COUNTERS = [
    "new_members",
    "left",
    "erased",
    "posts",
    *INTERACTIONS,
    "views",
    "views_via_share",
    "checkins",
    "actions",
    "active_members",
    VIEWERS,
]


class SegmentsNotSupported(Unprocessable):
    code, title = "segment-not-supported", "This metric cannot be split by segment"


# Counted per event, not per member: a segment cannot split them (docs/metrics.md).
EVENT_ONLY_FIGURES = frozenset(
    {
        "posts",
        "comments",
        "reactions",
        "shares",
        "answers",
        "interactions",
        "interactions_per_post",
        "views",
        "interaction_rate",
        "views_via_share",
        "checkins",
        "actions",
    }
)


class PostNotFound(NotFound):
    code, title = "post-not-found", "No metrics for this post"


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or DEFAULT_TIMEZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_TIMEZONE)


def summed(daily: dict[date, dict[str, int]], period: Period) -> dict[str, int]:
    totals = dict.fromkeys(COUNTERS, 0)
    for day, values in daily.items():
        if period.start <= day <= period.end:
            for metric, value in values.items():
                totals[metric] += value
    return totals


def per_day(daily: dict[date, dict[str, int]], metric: str) -> dict[date, int]:
    return {day: values.get(metric, 0) for day, values in daily.items()}


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


class AnalyticsService(EngagementMetrics):
    async def record_registration(self, session: AsyncSession, registered_at: datetime) -> None:
        """The daily growth counter alone (kept for the outbox pipeline benchmark)."""
        await GrowthRepository(session).count_registration(registered_at.date())

    async def _distinct(
        self,
        q: MetricsQueries,
        scope: str,
        periods: list[Period],
        daily: dict[date, dict[str, int]],
    ) -> list[dict[str, int]]:
        """Active members, WAU, MAU and reach of each period.

        Unfiltered: from the counters kept at ingest (windows.py), a bounded read whatever
        the number of members. A segment filters members, so it reads per-member rows.
        """
        result: list[dict[str, int]] = []
        if q.segment_id is None:
            windows = [w for p in periods for w in (p, p.trailing(WAU_DAYS), p.trailing(MAU_DAYS))]
            active = await distinct_members(
                q.session, scope, ACTIVE, windows, per_day(daily, "active_members")
            )
            reach = await distinct_members(
                q.session, scope, VIEWER, periods, per_day(daily, VIEWERS)
            )
            for n in range(len(periods)):
                result.append(
                    {
                        "active_members": active[3 * n],
                        "wau": active[3 * n + 1],
                        "mau": active[3 * n + 2],
                        "reach": reach[n],
                    }
                )
            return result
        for period in periods:
            mau_window, wau_window = period.trailing(MAU_DAYS), period.trailing(WAU_DAYS)
            active_n, wau, mau = await q.distinct_active_since(
                scope, period.end, [period.start, wau_window.start, mau_window.start]
            )
            reach_n = await q.distinct_step_members(scope, "post.viewed", period)
            result.append({"active_members": active_n, "wau": wau, "mau": mau, "reach": reach_n})
        return result

    def _figures(
        self,
        period: Period,
        daily: dict[date, dict[str, int]],
        total_members: int,
        distinct: dict[str, int],
    ) -> dict[str, float]:
        c = summed(daily, period)
        mau = distinct["mau"]
        dau_in_mau_window = summed(daily, period.trailing(MAU_DAYS))["active_members"]
        interactions = sum(c[name] for name in INTERACTIONS)
        return {
            "new_members": c["new_members"],
            "left": c["left"],
            "erased": c["erased"],
            "net_members": c["new_members"] - c["left"] - c["erased"],
            "total_members": total_members,
            "active_members": distinct["active_members"],
            "dau": daily.get(period.end, {}).get("active_members", 0),
            "avg_dau": round(c["active_members"] / period.days, 2),
            "wau": distinct["wau"],
            "mau": mau,
            "stickiness": ratio(dau_in_mau_window / MAU_DAYS, mau) or 0.0,
            "posts": c["posts"],
            "comments": c["comments"],
            "reactions": c["reactions"],
            "shares": c["shares"],
            "answers": c["answers"],
            "interactions": interactions,
            "interactions_per_post": ratio(interactions, c["posts"], 2) or 0.0,
            "views": c["views"],
            "interaction_rate": ratio(interactions, c["views"]) or 0.0,
            "reach": distinct["reach"],
            "views_via_share": c["views_via_share"],
            "checkins": c["checkins"],
            "actions": c["actions"],
        }

    async def overview(
        self,
        session: AsyncSession,
        start: date,
        end: date,
        *,
        community_id: str | None = None,
        granularity: Granularity = Granularity.DAY,
        segment_id: str | None = None,
    ) -> Overview:
        """With ``segment_id``, figures come from per-member rows of the segment's members;
        figures counted per event (posts, views, ...) are left out."""
        period = resolve_period(start, end)
        previous = period.previous()
        scope = community_id or PLATFORM
        q = MetricsQueries(session, segment_id)
        # One read of the daily counters serves both periods and their MAU windows.
        read = Period(previous.start - timedelta(days=MAU_DAYS), period.end)
        if segment_id is None:
            daily = await q.daily_counters(scope, COUNTERS, read)
            totals = await q.counters_until(scope, ["new_members", "left", "erased"], period.end)
            total = totals["new_members"] - totals["left"] - totals["erased"]
        else:
            daily = await q.member_daily(scope, read)
            total = await q.members_on(scope, period.end)
        in_period = summed(daily, period)
        before_total = total - (in_period["new_members"] - in_period["left"] - in_period["erased"])
        distinct_now, distinct_before = await self._distinct(q, scope, [period, previous], daily)
        now = self._figures(period, daily, total, distinct_now)
        before = self._figures(previous, daily, before_total, distinct_before)
        figures = {
            name: Figure(
                value=value, previous=before[name], change_pct=change_pct(value, before[name])
            )
            for name, value in now.items()
            if segment_id is None or name not in EVENT_ONLY_FIGURES
        }
        if segment_id is None:
            channels_now = await q.by_dimension(scope, "new_members", period)
            channels_before = await q.by_dimension(scope, "new_members", previous)
        else:
            channels_now = await q.channels_joined(scope, period)
            channels_before = await q.channels_joined(scope, previous)
        channels = [
            ChannelGrowth(
                channel=ch, new_members=channels_now.get(ch, 0), previous=channels_before.get(ch, 0)
            )
            for ch in sorted(set(channels_now) | set(channels_before))
        ]
        return Overview(
            community_id=community_id,
            segment_id=segment_id,
            granularity=granularity.value,
            period_from=period.start,
            period_to=period.end,
            previous_from=previous.start,
            previous_to=previous.end,
            as_of=await self.as_of(session),
            members=MemberGrowth(
                total=int(now["total_members"]),
                new_in_period=int(now["new_members"]),
                new_in_previous_period=int(before["new_members"]),
            ),
            figures=figures,
            channels=channels,
            series=await self._series(q, scope, period, granularity, daily, segment_id is None),
        )

    async def _series(
        self,
        q: MetricsQueries,
        scope: str,
        period: Period,
        granularity: Granularity,
        daily: dict[date, dict[str, int]],
        per_event: bool = True,
    ) -> list[SeriesPoint]:
        points: list[SeriesPoint] = []
        periods = buckets(period, granularity)
        if granularity is Granularity.DAY:
            active = [summed(daily, bucket)["active_members"] for bucket in periods]
        elif q.segment_id is None:
            active = await distinct_members(
                q.session, scope, ACTIVE, periods, per_day(daily, "active_members")
            )
        else:
            active = [await q.distinct_active(scope, bucket) for bucket in periods]
        for bucket, active_n in zip(periods, active, strict=True):
            sums = summed(daily, bucket)
            points.append(
                SeriesPoint(
                    start=bucket.start,
                    end=bucket.end,
                    new_members=sums["new_members"],
                    left=sums["left"],
                    erased=sums["erased"],
                    net=sums["new_members"] - sums["left"] - sums["erased"],
                    active_members=active_n,
                    posts=sums["posts"] if per_event else None,
                    interactions=sum(sums[name] for name in INTERACTIONS) if per_event else None,
                    views=sums["views"] if per_event else None,
                )
            )
        return points

    async def heatmap(
        self, session: AsyncSession, period: Period, community_id: str | None
    ) -> Heatmap:
        q = MetricsQueries(session)
        tz_name = (await q.timezone_of(community_id) if community_id else None) or DEFAULT_TIMEZONE
        tz = zone(tz_name)
        if period.end == datetime.now(UTC).date():
            # "Today" is the community's today: east of UTC it has begun before UTC's.
            period = Period(period.start, max(period.end, datetime.now(tz).date()))
        # Local days can start up to 14 h either side of UTC midnight: read a day more each side.
        utc_start = day_start(period.start - timedelta(days=1))
        utc_end = day_start(period.end + timedelta(days=2))
        cells = [[0] * 24 for _ in range(7)]
        for hour_start, actions in await q.hourly(community_id or PLATFORM, utc_start, utc_end):
            local = hour_start.astimezone(tz)
            if period.start <= local.date() <= period.end:
                cells[local.weekday()][local.hour] += actions
        peak = max(
            (
                HeatmapCell(weekday=d, hour=h, actions=cells[d][h])
                for d in range(7)
                for h in range(24)
            ),
            key=lambda cell: cell.actions,
        )
        hours: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        for post in await q.posts_published(community_id, utc_start, utc_end):
            assert post.published_at is not None
            local = post.published_at.astimezone(tz)
            if period.start <= local.date() <= period.end:
                hours[local.hour][0] += 1
                hours[local.hour][1] += sum(getattr(post, name) for name in INTERACTIONS)
        best = sorted(
            (
                PostingHour(hour=h, posts=p, interactions=i, interactions_per_post=round(i / p, 2))
                for h, (p, i) in hours.items()
            ),
            key=lambda ph: (-ph.interactions_per_post, -ph.posts, ph.hour),
        )
        return Heatmap(
            community_id=community_id,
            timezone=tz_name,
            period_from=period.start,
            period_to=period.end,
            as_of=await self.as_of(session),
            cells=cells,
            peak=peak if peak.actions else None,
            best_posting_hours=best,
        )

    async def campaign_funnel(
        self, session: AsyncSession, campaign_id: str, segment_id: str | None = None
    ) -> Funnel:
        """``reached`` is null until analytics has seen the campaign's ``campaign.created``."""
        q = MetricsQueries(session, segment_id)
        counts = await q.campaign_steps(campaign_id)
        target = await q.campaign_target(campaign_id)
        if target is not None:
            counts["reached"] = await q.campaign_reached(target)
        known = {step for steps in CAMPAIGN_STEP_EVENTS.values() for step in steps}
        if target is not None:
            known.add("reached")
        members = [counts.get(step, 0) if step in known else None for step in CAMPAIGN_STEPS]
        return Funnel(
            kind="campaign",
            campaign_id=campaign_id,
            segment_id=segment_id,
            as_of=await self.as_of(session),
            steps=funnel_steps(list(CAMPAIGN_STEPS), members),
        )

    async def target_segment(self, session: AsyncSession, campaign_id: str) -> str | None:
        target = await MetricsQueries(session).campaign_target(campaign_id)
        return target.segment_id if target else None

    async def content(self, session: AsyncSession, post_id: str) -> ContentMetrics:
        post = await MetricsQueries(session).post(post_id)
        if post is None:
            raise PostNotFound(f"No events seen for post {post_id}")
        interactions = sum(getattr(post, name) for name in INTERACTIONS)
        return ContentMetrics(
            post_id=post.post_id,
            community_id=post.community_id,
            author_id=post.author_id,
            post_type=post.post_type,
            published_at=post.published_at,
            views=post.views,
            reach=post.reach,
            comments=post.comments,
            reactions=post.reactions,
            shares=post.shares,
            answers=post.answers,
            interactions=interactions,
            interaction_rate=ratio(interactions, post.views),
            views_via_share=post.views_via_share,
            as_of=await self.as_of(session),
        )

    async def community_of_post(self, session: AsyncSession, post_id: str) -> str | None:
        post = await MetricsQueries(session).post(post_id)
        return post.community_id if post else None


analytics_service = AnalyticsService()
