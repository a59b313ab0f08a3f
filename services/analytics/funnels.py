"""Ordered funnels with a conversion window, PostHog style, over the compact step table.

Each member enters at the first time they did step 1 in the period; step k counts
when they did it at or after the time they reached step k-1 (strictly after when
the two steps are the same event type) and no later than entry + window. The
table keeps only the first and last time per member, type and day, so within a
day where step k's first time is before step k-1 the last time stands in; that
is exact unless a member repeats an action several times in one day.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta


@dataclass(frozen=True)
class StepRow:
    event_type: str
    member_id: str
    day: date
    first_at: datetime
    last_at: datetime


def _earliest_at_or_after(
    rows: list[StepRow], after: datetime, strictly: bool, deadline: datetime
) -> datetime | None:
    for row in rows:  # sorted by day
        for candidate in (row.first_at, row.last_at):
            later = candidate > after if strictly else candidate >= after
            if later:
                return candidate if candidate <= deadline else None
    return None


def funnel_counts(
    steps: Sequence[str],
    rows: Iterable[StepRow],
    period_start: date,
    period_end: date,
    window: timedelta,
) -> list[int]:
    """How many members reached each step, in order."""
    by_member: dict[str, dict[str, list[StepRow]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        by_member[row.member_id][row.event_type].append(row)
    counts = [0] * len(steps)
    for per_type in by_member.values():
        entries = [r for r in per_type.get(steps[0], []) if period_start <= r.day <= period_end]
        if not entries:
            continue
        for lst in per_type.values():
            lst.sort(key=lambda r: r.day)
        entered = min(r.first_at for r in entries)
        deadline = entered + window
        counts[0] += 1
        reached = entered
        for index in range(1, len(steps)):
            found = _earliest_at_or_after(
                per_type.get(steps[index], []),
                reached,
                strictly=steps[index] == steps[index - 1],
                deadline=deadline,
            )
            if found is None:
                break
            counts[index] += 1
            reached = found
    return counts
