"""Member-level metrics: DAU/WAU/MAU series, lifecycle, funnels, retention, contributors."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics.consumers import SUBSCRIPTIONS
from services.analytics.funnels import funnel_counts
from services.analytics.kol import (
    BAND_NAMES,
    band_of,
    decay_weights,
    lookback_start,
)
from services.analytics.models import PLATFORM
from services.analytics.periods import (
    MAU_DAYS,
    MAX_PERIOD_DAYS,
    WAU_DAYS,
    Granularity,
    Period,
    bucket_start,
    buckets,
    week_start,
)
from services.analytics.queries import MetricsQueries
from services.analytics.schemas import (
    Activity,
    ActivityPoint,
    BandMove,
    Cohort,
    Contributor,
    Funnel,
    FunnelStep,
    LifecyclePoint,
    Retention,
    TopContributors,
)
from services.analytics.windows import ACTIVE, distinct_members
from shared.errors import Unprocessable

MAX_ACTIVITY_DAYS = 366
MAX_FUNNEL_STEPS = 8
# Every consumed member action is recorded in the step table, so any of them can be a step.
STEP_EVENT_TYPES = frozenset(SUBSCRIPTIONS) - {"community.created", "member.erased"}


class InvalidPeriod(Unprocessable):
    code, title = "invalid-period", "Invalid period"


class InvalidFunnel(Unprocessable):
    code, title = "invalid-funnel", "Invalid funnel"


def resolve_period(
    start: date | None, end: date | None, *, default_days: int = 30, max_days: int = MAX_PERIOD_DAYS
) -> Period:
    end = end or datetime.now(UTC).date()
    start = start or end - timedelta(days=default_days - 1)
    if end < start:
        raise InvalidPeriod("`to` must not be before `from`")
    period = Period(start, end)
    if period.days > max_days:
        raise InvalidPeriod(f"this metric spans at most {max_days} days")
    return period


def ratio(numerator: float, denominator: float, digits: int = 4) -> float | None:
    return round(numerator / denominator, digits) if denominator else None


def funnel_steps(names: list[str], members: list[int | None]) -> list[FunnelStep]:
    """Conversion from the previous step with data, and from the first step with data."""
    steps: list[FunnelStep] = []
    first: int | None = None
    previous: int | None = None
    for name, count in zip(names, members, strict=True):
        if first is None and count is not None:
            first = count
        steps.append(
            FunnelStep(
                name=name,
                members=count,
                conversion_from_previous=(
                    ratio(count, previous) if count is not None and previous is not None else None
                ),
                conversion_from_first=(
                    ratio(count, first) if count is not None and first is not None else None
                ),
            )
        )
        if count is not None:
            previous = count
    return steps


class _Window:
    """Distinct members over a sliding window of days, in time linear in the rows."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def add(self, members: set[str]) -> None:
        self.counts.update(members)

    def remove(self, members: set[str]) -> None:
        self.counts.subtract(members)
        for member in members:
            if self.counts[member] <= 0:
                del self.counts[member]

    def __len__(self) -> int:
        return len(self.counts)


def _before(bucket: Period, granularity: Granularity) -> Period:
    """The calendar bucket just before ``bucket`` (lifecycle's "previous")."""
    return Period(
        bucket_start(bucket.start - timedelta(days=1), granularity),
        bucket.start - timedelta(days=1),
    )


class EngagementMetrics:
    async def as_of(self, session: AsyncSession) -> datetime | None:
        row = await MetricsQueries(session).freshness()
        return row.as_of if row else None

    async def activity(
        self,
        session: AsyncSession,
        period: Period,
        community_id: str | None,
        granularity: Granularity,
        segment_id: str | None = None,
    ) -> Activity:
        if period.days > MAX_ACTIVITY_DAYS:
            raise InvalidPeriod(f"the activity series spans at most {MAX_ACTIVITY_DAYS} days")
        scope = community_id or PLATFORM
        q = MetricsQueries(session, segment_id)
        periods = buckets(period, granularity)
        first_previous = bucket_start(periods[0].start - timedelta(days=1), granularity)
        earliest = min(first_previous, period.start - timedelta(days=MAU_DAYS - 1))
        if segment_id is None:
            days, lifecycle = await self._activity_from_counters(
                q, scope, period, periods, granularity, Period(earliest, period.end)
            )
        else:
            days, lifecycle = await self._activity_of_members(
                q, scope, period, periods, granularity, Period(earliest, period.end)
            )
        return Activity(
            community_id=community_id,
            segment_id=segment_id,
            granularity=granularity.value,
            period_from=period.start,
            period_to=period.end,
            as_of=await self.as_of(session),
            days=days,
            lifecycle=lifecycle,
        )

    async def _activity_from_counters(
        self,
        q: MetricsQueries,
        scope: str,
        period: Period,
        periods: list[Period],
        granularity: Granularity,
        read: Period,
    ) -> tuple[list[ActivityPoint], list[LifecyclePoint]]:
        """From the rollups kept at ingest: member-days per day and the distinct counts of
        windows (windows.py); only members who joined in the period are read one by one."""
        daily = await q.daily_counters(scope, ["active_members"], read)
        member_days = {day: values["active_members"] for day, values in daily.items()}
        every_day = [period.start + timedelta(days=k) for k in range(period.days)]
        befores = [_before(bucket, granularity) for bucket in periods]
        windows = [
            *(Period(day - timedelta(days=WAU_DAYS - 1), day) for day in every_day),
            *(Period(day - timedelta(days=MAU_DAYS - 1), day) for day in every_day),
            *periods,
            *befores,
            *(Period(b.start, bucket.end) for b, bucket in zip(befores, periods, strict=True)),
        ]
        counts = iter(await distinct_members(q.session, scope, ACTIVE, windows, member_days))
        wau = [next(counts) for _ in every_day]
        mau = [next(counts) for _ in every_day]
        current, previous, either = ([next(counts) for _ in periods] for _ in range(3))
        days = [
            ActivityPoint(
                day=day,
                dau=member_days.get(day, 0),
                wau=wau[n],
                mau=mau[n],
                stickiness=ratio(
                    sum(member_days.get(day - timedelta(days=k), 0) for k in range(MAU_DAYS))
                    / MAU_DAYS,
                    mau[n],
                ),
            )
            for n, day in enumerate(every_day)
        ]
        # New members are those who joined in the bucket and were active in it; some of
        # them were active in the bucket before too (a community's public posts).
        joined: dict[str, tuple[date, set[date]]] = {}
        joined_in = Period(periods[0].start, periods[-1].end)
        for member, joined_on, day in await q.joiners_active_days(scope, joined_in, read):
            joined.setdefault(member, (joined_on, set()))[1].add(day)
        by_join_day: dict[date, list[set[date]]] = defaultdict(list)
        for joined_on, active_days in joined.values():
            by_join_day[joined_on].append(active_days)
        lifecycle: list[LifecyclePoint] = []
        for n, (bucket, before) in enumerate(zip(periods, befores, strict=True)):
            new = new_and_before = 0
            for offset in range(bucket.days):
                for active_days in by_join_day.get(bucket.start + timedelta(days=offset), ()):
                    if any(bucket.start <= d <= bucket.end for d in active_days):
                        new += 1
                        new_and_before += any(before.start <= d <= before.end for d in active_days)
            both = current[n] + previous[n] - either[n]  # active in the bucket and before it
            returning = both - new_and_before
            lifecycle.append(
                LifecyclePoint(
                    start=bucket.start,
                    end=bucket.end,
                    new=new,
                    returning=returning,
                    resurrecting=current[n] - new - returning,
                    dormant=previous[n] - both,
                )
            )
        return days, lifecycle

    async def _activity_of_members(
        self,
        q: MetricsQueries,
        scope: str,
        period: Period,
        periods: list[Period],
        granularity: Granularity,
        read: Period,
    ) -> tuple[list[ActivityPoint], list[LifecyclePoint]]:
        """From per-member rows: what a segment filter needs."""
        earliest = read.start
        by_day: dict[date, set[str]] = defaultdict(set)
        for member, day in await q.activity_rows(scope, Period(earliest, period.end)):
            by_day[day].add(member)

        wau, mau = _Window(), _Window()
        dau_sum = 0
        days: list[ActivityPoint] = []
        day = earliest
        while day <= period.end:
            today = by_day.get(day, set())
            wau.add(today)
            mau.add(today)
            dau_sum += len(today)
            gone_w = day - timedelta(days=WAU_DAYS)
            gone_m = day - timedelta(days=MAU_DAYS)
            if gone_w >= earliest:
                wau.remove(by_day.get(gone_w, set()))
            if gone_m >= earliest:
                mau.remove(by_day.get(gone_m, set()))
                dau_sum -= len(by_day.get(gone_m, set()))
            if day >= period.start:
                days.append(
                    ActivityPoint(
                        day=day,
                        dau=len(today),
                        wau=len(wau),
                        mau=len(mau),
                        stickiness=ratio(dau_sum / MAU_DAYS, len(mau)),
                    )
                )
            day += timedelta(days=1)

        def active_in(p: Period) -> set[str]:
            found: set[str] = set()
            for offset in range(p.days):
                found |= by_day.get(p.start + timedelta(days=offset), set())
            return found

        lifecycle: list[LifecyclePoint] = []
        for bucket in periods:
            before = _before(bucket, granularity)
            current, previous = active_in(bucket), active_in(before)
            joined = await q.joined_set(scope, bucket)
            new = current & joined
            lifecycle.append(
                LifecyclePoint(
                    start=bucket.start,
                    end=bucket.end,
                    new=len(new),
                    returning=len((current - new) & previous),
                    resurrecting=len(current - new - previous),
                    dormant=len(previous - current),
                )
            )
        return days, lifecycle

    async def funnel(
        self,
        session: AsyncSession,
        steps: list[str],
        period: Period,
        community_id: str | None,
        window_days: int,
        segment_id: str | None = None,
    ) -> Funnel:
        if not 2 <= len(steps) <= MAX_FUNNEL_STEPS:
            raise InvalidFunnel(f"a funnel has 2 to {MAX_FUNNEL_STEPS} steps")
        unknown = [step for step in steps if step not in STEP_EVENT_TYPES]
        if unknown:
            raise InvalidFunnel(
                f"unknown step event types: {', '.join(unknown)}",
                allowed=sorted(STEP_EVENT_TYPES),
            )
        window = timedelta(days=window_days)
        rows = await MetricsQueries(session, segment_id).step_rows(
            community_id or PLATFORM, sorted(set(steps)), Period(period.start, period.end + window)
        )
        counts = funnel_counts(steps, rows, period.start, period.end, window)
        return Funnel(
            kind="events",
            community_id=community_id,
            segment_id=segment_id,
            period_from=period.start,
            period_to=period.end,
            window_days=window_days,
            as_of=await self.as_of(session),
            steps=funnel_steps(steps, list(counts)),
        )

    async def retention(
        self,
        session: AsyncSession,
        period: Period,
        community_id: str | None,
        weeks: int,
        segment_id: str | None = None,
    ) -> Retention:
        first_week, last_week = week_start(period.start), week_start(period.end)
        horizon = last_week + timedelta(days=7 * (weeks + 1) - 1)
        joined, active = await MetricsQueries(session, segment_id).cohort_activity(
            community_id or PLATFORM, Period(first_week, last_week + timedelta(days=6)), horizon
        )
        cohorts_of: dict[date, list[str]] = defaultdict(list)
        for member, day in joined.items():
            cohorts_of[week_start(day)].append(member)
        today = datetime.now(UTC).date()
        cohorts: list[Cohort] = []
        week = first_week
        while week <= last_week:
            members = cohorts_of.get(week, [])
            counts: list[int | None] = []
            for k in range(1, weeks + 1):
                start = week + timedelta(days=7 * k)
                if start > today:
                    counts.append(None)
                    continue
                end = start + timedelta(days=6)
                counts.append(
                    sum(1 for m in members if any(start <= d <= end for d in active.get(m, ())))
                )
            cohorts.append(
                Cohort(
                    week_start=week,
                    size=len(members),
                    active=counts,
                    retained=[None if c is None else ratio(c, len(members)) for c in counts],
                )
            )
            week += timedelta(days=7)
        return Retention(
            community_id=community_id,
            segment_id=segment_id,
            weeks=weeks,
            as_of=await self.as_of(session),
            cohorts=cohorts,
        )

    async def top_contributors(
        self,
        session: AsyncSession,
        period: Period,
        community_id: str | None,
        half_life_days: float,
        limit: int,
        segment_id: str | None = None,
    ) -> TopContributors:
        now_day, before_day = period.end, period.start - timedelta(days=1)
        start_now = lookback_start(now_day, half_life_days)
        start_before = lookback_start(before_day, half_life_days)
        q = MetricsQueries(session, segment_id)
        scores = await q.scores(
            community_id or PLATFORM,
            min(start_now, start_before),
            now_day,
            [
                decay_weights(start_now, now_day, half_life_days),
                decay_weights(start_before, before_day, half_life_days),
            ],
        )
        bands: Counter[str] = Counter()
        moves: Counter[tuple[str, str]] = Counter()
        ranked: list[tuple[str, float, float, float, str, str]] = []
        for member, ((init, recv), (init_b, recv_b)) in scores.items():
            score, before = init + recv, init_b + recv_b
            band, band_before = band_of(score), band_of(before)
            bands[band] += 1
            moves[(band_before, band)] += 1
            if score > 0:
                ranked.append((member, score, init, recv, band, band_before))
        ranked.sort(key=lambda item: (-item[1], item[0]))
        top = ranked[:limit]
        authored = await q.author_totals([item[0] for item in top])
        items = [
            Contributor(
                rank=rank,
                member_id=member,
                score=round(score, 3),
                initiated=round(init, 3),
                received=round(recv, 3),
                band=band,
                previous_band=band_before,
                posts=authored.get(member, {}).get("posts", 0),
                interactions_received=authored.get(member, {}).get("interactions_received", 0),
                views_received=authored.get(member, {}).get("views_received", 0),
                reach=authored.get(member, {}).get("reach", 0),
            )
            for rank, (member, score, init, recv, band, band_before) in enumerate(top, start=1)
        ]
        return TopContributors(
            community_id=community_id,
            segment_id=segment_id,
            as_of_day=now_day,
            previous_day=before_day,
            half_life_days=half_life_days,
            as_of=await self.as_of(session),
            items=items,
            bands={name: bands.get(name, 0) for name in BAND_NAMES},
            movement=[
                BandMove(from_band=a, to_band=b, members=n)
                for (a, b), n in sorted(
                    moves.items(),
                    key=lambda kv: (BAND_NAMES.index(kv[0][0]), BAND_NAMES.index(kv[0][1])),
                )
            ],
        )
