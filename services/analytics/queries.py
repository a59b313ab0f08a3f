"""Every read of the rollups; each is a bounded range over an index, never a raw-event scan."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, literal, or_, select, union
from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics.funnels import StepRow
from services.analytics.models import (
    ERASED_PREFIX,
    CampaignMemberStep,
    CampaignTarget,
    Community,
    DailyCounter,
    Freshness,
    HourlyActivity,
    MemberActivityDay,
    MemberEventDay,
    MemberScoreDay,
    PostStats,
    ScopeMember,
    SegmentMember,
    StaffMember,
)
from services.analytics.periods import Period


class MetricsQueries:
    """``segment_id`` narrows every member-level query to the segment's snapshot (segments.py)."""

    def __init__(self, session: AsyncSession, segment_id: str | None = None) -> None:
        self.session = session
        self.segment_id = segment_id

    def members(self, column: Any) -> list[ColumnElement[bool]]:
        """The segment condition on a member id column; nothing without a segment."""
        if self.segment_id is None:
            return []
        in_segment = select(SegmentMember.member_id).where(
            SegmentMember.segment_id == self.segment_id
        )
        return [column.in_(in_segment)]

    async def counters(
        self, scope: str, metrics: list[str], period: Period, dimension: str = ""
    ) -> dict[str, int]:
        rows = await self.session.execute(
            select(DailyCounter.metric, func.sum(DailyCounter.value))
            .where(
                DailyCounter.scope == scope,
                DailyCounter.day.between(period.start, period.end),
                DailyCounter.metric.in_(metrics),
                DailyCounter.dimension == dimension,
            )
            .group_by(DailyCounter.metric)
        )
        found = {metric: int(value or 0) for metric, value in rows.all()}
        return {metric: found.get(metric, 0) for metric in metrics}

    async def counters_until(self, scope: str, metrics: list[str], end: date) -> dict[str, int]:
        return await self.counters(scope, metrics, Period(date(1970, 1, 1), end))

    async def daily_counters(
        self, scope: str, metrics: list[str], period: Period
    ) -> dict[date, dict[str, int]]:
        """Counters pivoted to one row per day: a 90-day overview reads 90 rows, not 1,000."""
        columns = [
            func.sum(case((DailyCounter.metric == metric, DailyCounter.value), else_=0))
            for metric in metrics
        ]
        rows = await self.session.execute(
            select(DailyCounter.day, *columns)
            .where(
                DailyCounter.scope == scope,
                DailyCounter.day.between(period.start, period.end),
                DailyCounter.metric.in_(metrics),
                DailyCounter.dimension == "",
            )
            .group_by(DailyCounter.day)
        )
        return {
            day: {metric: int(value or 0) for metric, value in zip(metrics, values, strict=True)}
            for day, *values in rows.all()
        }

    async def by_dimension(self, scope: str, metric: str, period: Period) -> dict[str, int]:
        rows = await self.session.execute(
            select(DailyCounter.dimension, func.sum(DailyCounter.value))
            .where(
                DailyCounter.scope == scope,
                DailyCounter.day.between(period.start, period.end),
                DailyCounter.metric == metric,
                DailyCounter.dimension != "",
            )
            .group_by(DailyCounter.dimension)
        )
        return {dimension: int(value or 0) for dimension, value in rows.all()}

    async def distinct_active(self, scope: str, period: Period) -> int:
        members = (
            select(MemberActivityDay.member_id)
            .where(
                MemberActivityDay.scope == scope,
                MemberActivityDay.day.between(period.start, period.end),
                *self.members(MemberActivityDay.member_id),
            )
            .distinct()
            .subquery()
        )
        # COUNT over a DISTINCT subquery lets PostgreSQL hash instead of sorting.
        return int(await self.session.scalar(select(func.count()).select_from(members)) or 0)

    async def distinct_active_since(self, scope: str, end: date, starts: list[date]) -> list[int]:
        """Distinct members active in each window ``start..end``, all from one scan."""
        last = (
            select(MemberActivityDay.member_id, func.max(MemberActivityDay.day).label("last"))
            .where(
                MemberActivityDay.scope == scope,
                MemberActivityDay.day.between(min(starts), end),
                *self.members(MemberActivityDay.member_id),
            )
            .group_by(MemberActivityDay.member_id)
            .subquery()
        )
        row = (
            await self.session.execute(
                select(*(func.sum(case((last.c.last >= start, 1), else_=0)) for start in starts))
            )
        ).one()
        return [int(value or 0) for value in row]

    async def active_set(self, scope: str, period: Period) -> set[str]:
        rows = await self.session.scalars(
            select(MemberActivityDay.member_id)
            .where(
                MemberActivityDay.scope == scope,
                MemberActivityDay.day.between(period.start, period.end),
                *self.members(MemberActivityDay.member_id),
            )
            .distinct()
        )
        return set(rows)

    async def activity_rows(self, scope: str, period: Period) -> list[tuple[str, date]]:
        rows = await self.session.execute(
            select(MemberActivityDay.member_id, MemberActivityDay.day).where(
                MemberActivityDay.scope == scope,
                MemberActivityDay.day.between(period.start, period.end),
                *self.members(MemberActivityDay.member_id),
            )
        )
        return [(member, day) for member, day in rows.all()]

    async def joiners_active_days(
        self, scope: str, joined: Period, active: Period
    ) -> list[tuple[str, date, date]]:
        """(member, joined on, active day) for members who joined the scope in ``joined``,
        one row per active day of theirs in ``active``: bounded by the joiners, not by
        everyone active."""
        rows = await self.session.execute(
            select(ScopeMember.member_id, ScopeMember.joined_on, MemberActivityDay.day)
            .join(
                MemberActivityDay,
                and_(
                    MemberActivityDay.scope == ScopeMember.scope,
                    MemberActivityDay.member_id == ScopeMember.member_id,
                ),
            )
            .where(
                ScopeMember.scope == scope,
                ScopeMember.joined_on.between(joined.start, joined.end),
                MemberActivityDay.day.between(active.start, active.end),
                *self.members(ScopeMember.member_id),
            )
        )
        return [(member, joined_on, day) for member, joined_on, day in rows.all()]

    async def joined_set(self, scope: str, period: Period) -> set[str]:
        rows = await self.session.scalars(
            select(ScopeMember.member_id).where(
                ScopeMember.scope == scope,
                ScopeMember.joined_on.between(period.start, period.end),
                *self.members(ScopeMember.member_id),
            )
        )
        return set(rows)

    async def distinct_step_members(self, scope: str, event_type: str, period: Period) -> int:
        members = (
            select(MemberEventDay.member_id)
            .where(
                MemberEventDay.scope == scope,
                MemberEventDay.event_type == event_type,
                MemberEventDay.day.between(period.start, period.end),
                *self.members(MemberEventDay.member_id),
            )
            .distinct()
            .subquery()
        )
        return int(await self.session.scalar(select(func.count()).select_from(members)) or 0)

    async def step_rows(self, scope: str, event_types: list[str], period: Period) -> list[StepRow]:
        rows = await self.session.execute(
            select(
                MemberEventDay.event_type,
                MemberEventDay.member_id,
                MemberEventDay.day,
                MemberEventDay.first_at,
                MemberEventDay.last_at,
            ).where(
                MemberEventDay.scope == scope,
                MemberEventDay.event_type.in_(event_types),
                MemberEventDay.day.between(period.start, period.end),
                *self.members(MemberEventDay.member_id),
            )
        )
        return [StepRow(*row) for row in rows.all()]

    async def hourly(
        self, scope: str, start: datetime, end: datetime
    ) -> list[tuple[datetime, int]]:
        rows = await self.session.execute(
            select(HourlyActivity.hour_start, HourlyActivity.actions).where(
                HourlyActivity.scope == scope,
                HourlyActivity.hour_start >= start,
                HourlyActivity.hour_start < end,
            )
        )
        return [(hour, int(actions)) for hour, actions in rows.all()]

    async def timezone_of(self, community_id: str) -> str | None:
        community = await self.session.get(Community, community_id)
        return community.timezone if community else None

    async def post(self, post_id: str) -> PostStats | None:
        return await self.session.get(PostStats, post_id)

    async def posts_published(
        self, community_id: str | None, start: datetime, end: datetime
    ) -> list[PostStats]:
        query = select(PostStats).where(
            PostStats.published_at >= start, PostStats.published_at < end
        )
        if community_id:
            query = query.where(PostStats.community_id == community_id)
        return list(await self.session.scalars(query))

    async def author_totals(self, author_ids: list[str]) -> dict[str, dict[str, int]]:
        if not author_ids:
            return {}
        rows = await self.session.execute(
            select(
                PostStats.author_id,
                func.count(),
                func.sum(
                    PostStats.comments + PostStats.reactions + PostStats.shares + PostStats.answers
                ),
                func.sum(PostStats.views),
                func.sum(PostStats.reach),
            )
            .where(PostStats.author_id.in_(author_ids))
            .group_by(PostStats.author_id)
        )
        return {
            str(author): {
                "posts": int(posts),
                "interactions_received": int(interactions or 0),
                "views_received": int(views or 0),
                "reach": int(reach or 0),
            }
            for author, posts, interactions, views, reach in rows.all()
        }

    async def campaign_steps(self, campaign_id: str) -> dict[str, int]:
        rows = await self.session.execute(
            select(CampaignMemberStep.step, func.count())
            .where(
                CampaignMemberStep.campaign_id == campaign_id,
                *self.members(CampaignMemberStep.member_id),
            )
            .group_by(CampaignMemberStep.step)
        )
        return {step: int(count) for step, count in rows.all()}

    async def scores(
        self, scope: str, start: date, end: date, weights: list[dict[date, float]]
    ) -> dict[str, list[tuple[float, float]]]:
        """Per member, for each weighting: (decayed initiated, decayed received)."""

        def decayed(column: Any, weight: dict[date, float]) -> ColumnElement[Any]:
            factor = case(
                *((MemberScoreDay.day == day, literal(w)) for day, w in weight.items()),
                else_=literal(0.0),
            )
            return func.sum(column * factor)

        columns = []
        for weight in weights:
            columns += [
                decayed(MemberScoreDay.initiated, weight),
                decayed(MemberScoreDay.received, weight),
            ]
        rows = await self.session.execute(
            select(MemberScoreDay.member_id, *columns)
            .where(
                MemberScoreDay.scope == scope,
                MemberScoreDay.day.between(start, end),
                MemberScoreDay.member_id.not_in(select(StaffMember.member_id)),
                MemberScoreDay.member_id.not_like(f"{ERASED_PREFIX}%"),
                *self.members(MemberScoreDay.member_id),
            )
            .group_by(MemberScoreDay.member_id)
        )
        result: dict[str, list[tuple[float, float]]] = {}
        for member_id, *values in rows.all():
            result[member_id] = [
                (float(values[i] or 0.0), float(values[i + 1] or 0.0))
                for i in range(0, len(values), 2)
            ]
        return result

    async def cohort_activity(
        self, scope: str, cohorts: Period, horizon: date
    ) -> tuple[dict[str, date], dict[str, set[date]]]:
        """Members who joined in ``cohorts`` with their join day, and their active days after."""
        joined_rows = await self.session.execute(
            select(ScopeMember.member_id, ScopeMember.joined_on).where(
                ScopeMember.scope == scope,
                ScopeMember.joined_on.between(cohorts.start, cohorts.end),
                *self.members(ScopeMember.member_id),
            )
        )
        joined: dict[str, date] = {str(m): d for m, d in joined_rows.all()}
        active: dict[str, set[date]] = defaultdict(set)
        for member, _, day in await self.joiners_active_days(
            scope, cohorts, Period(cohorts.start, horizon)
        ):
            active[member].add(day)
        return joined, active

    async def member_daily(self, scope: str, period: Period) -> dict[date, dict[str, int]]:
        """Growth and active members per day from per-member rows: what a segment can filter.

        Erased members are re-keyed to surrogates no segment holds, so ``erased`` is 0 here.
        """
        daily: dict[date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        columns: list[tuple[Any, str]] = [
            (ScopeMember.joined_on, "new_members"),
            (ScopeMember.left_on, "left"),
        ]
        for column, metric in columns:
            rows = await self.session.execute(
                select(column, func.count())
                .where(
                    ScopeMember.scope == scope,
                    column.between(period.start, period.end),
                    *self.members(ScopeMember.member_id),
                )
                .group_by(column)
            )
            for day, count in rows.all():
                daily[day][metric] += int(count)
        active = await self.session.execute(
            select(MemberActivityDay.day, func.count())
            .where(
                MemberActivityDay.scope == scope,
                MemberActivityDay.day.between(period.start, period.end),
                *self.members(MemberActivityDay.member_id),
            )
            .group_by(MemberActivityDay.day)
        )
        for day, count in active.all():
            daily[day]["active_members"] += int(count)
        return {day: dict(values) for day, values in daily.items()}

    async def members_on(self, scope: str, day: date) -> int:
        """Members of the scope at the end of ``day`` (joined, not left)."""
        return int(
            await self.session.scalar(
                select(func.count()).where(
                    ScopeMember.scope == scope,
                    ScopeMember.joined_on <= day,
                    or_(ScopeMember.left_on.is_(None), ScopeMember.left_on > day),
                    *self.members(ScopeMember.member_id),
                )
            )
            or 0
        )

    async def channels_joined(self, scope: str, period: Period) -> dict[str, int]:
        rows = await self.session.execute(
            select(ScopeMember.channel, func.count())
            .where(
                ScopeMember.scope == scope,
                ScopeMember.joined_on.between(period.start, period.end),
                ScopeMember.channel != "",
                *self.members(ScopeMember.member_id),
            )
            .group_by(ScopeMember.channel)
        )
        return {channel: int(count) for channel, count in rows.all()}

    async def campaign_target(self, campaign_id: str) -> CampaignTarget | None:
        return await self.session.get(CampaignTarget, campaign_id)

    async def campaign_reached(self, target: CampaignTarget) -> int:
        """Members of the target community during the campaign (in its segment, if any),
        plus anyone who joined it: a participant was reached by definition."""
        conditions = [
            ScopeMember.scope == target.community_id,
            ScopeMember.joined_on <= target.ends_at.date(),
            or_(ScopeMember.left_on.is_(None), ScopeMember.left_on >= target.starts_at.date()),
            *self.members(ScopeMember.member_id),
        ]
        if target.segment_id is not None:
            conditions += MetricsQueries(self.session, target.segment_id).members(
                ScopeMember.member_id
            )
        audience = select(ScopeMember.member_id).where(*conditions)
        joined = select(CampaignMemberStep.member_id).where(
            CampaignMemberStep.campaign_id == target.campaign_id,
            CampaignMemberStep.step == "joined",
            *self.members(CampaignMemberStep.member_id),
        )
        reached = union(audience, joined).subquery()
        return int(await self.session.scalar(select(func.count()).select_from(reached)) or 0)

    async def freshness(self) -> Freshness | None:
        return await self.session.get(Freshness, 1)
