"""Periods and buckets: the calendar arithmetic every metric shares (UTC days)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum

WAU_DAYS = 7
MAU_DAYS = 28  # four whole weeks: every weekday counts equally in the window
MAX_PERIOD_DAYS = 731
# The longest window a distinct count is ever asked for: a whole period (activity_gaps).
MAX_WINDOW_DAYS = MAX_PERIOD_DAYS


class Granularity(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


@dataclass(frozen=True)
class Period:
    start: date
    end: date  # inclusive

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def previous(self) -> Period:
        """The period of the same length just before this one."""
        end = self.start - timedelta(days=1)
        return Period(end - timedelta(days=self.days - 1), end)

    def trailing(self, days: int) -> Period:
        """The ``days`` days ending on this period's last day (rolling WAU/MAU windows)."""
        return Period(self.end - timedelta(days=days - 1), self.end)


def week_start(day: date) -> date:
    return day - timedelta(days=day.weekday())


def bucket_start(day: date, granularity: Granularity) -> date:
    if granularity is Granularity.WEEK:
        return week_start(day)
    if granularity is Granularity.MONTH:
        return day.replace(day=1)
    return day


def next_bucket(start: date, granularity: Granularity) -> date:
    if granularity is Granularity.WEEK:
        return start + timedelta(days=7)
    if granularity is Granularity.MONTH:
        return (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    return start + timedelta(days=1)


def buckets(period: Period, granularity: Granularity) -> list[Period]:
    """Calendar buckets covering ``period``, clipped to it at both ends."""
    result: list[Period] = []
    start = bucket_start(period.start, granularity)
    while start <= period.end:
        nxt = next_bucket(start, granularity)
        result.append(Period(max(start, period.start), min(nxt - timedelta(days=1), period.end)))
        start = nxt
    return result


def change_pct(value: float, previous: float) -> float | None:
    """Change against the previous period in percent; None when there is nothing to compare."""
    if previous == 0:
        return None
    return round((value - previous) / previous * 100, 1)
