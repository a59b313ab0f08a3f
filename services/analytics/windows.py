"""Distinct members over any window of days, from counters kept at ingest (``activity_gaps``).

A member is active in the window ``a..b`` once, on their first active day in it: the
day ``d`` in ``a..b`` whose previous active day is before ``a``. So

    distinct(a..b) = member-days in a..b - #{rows on a day d in a+1..b with gap <= d - a}

where ``gap`` is the days since the member's previous active day. Member-days per day
are a daily counter; the rows by ``(day, gap)`` are ``activity_gaps``. A read touches at
most L(L-1)/2 ``(day, gap)`` cells for a window of L days (435 for 30 days, 378 for the
MAU window), whatever the number of members. Gaps of ``MAX_WINDOW_DAYS`` or more are
never asked about and are not kept.

At ingest, a member-day row that was really inserted (a replay inserts nothing) changes
the gap of its own day and of the member's next active day after it; both are found on
``ix_member_activity_days_member``, so late and out-of-order days land right. Erasure
re-keys rows to a surrogate and leaves these counts as they are.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from itertools import accumulate
from typing import Any

from sqlalchemy import delete, func, literal, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from services.analytics.bulk import (
    Columns,
    Shape,
    cached,
    encode,
    insert_new,
    insert_rows,
    is_postgres,
    size_of,
    table_of,
)
from services.analytics.models import ActivityGap, DailyCounter, MemberActivityDay, MemberEventDay
from services.analytics.periods import MAX_WINDOW_DAYS, Period

ACTIVE = "active"  # member_activity_days
VIEWER = "viewer"  # post.viewed rows of member_event_days (reach)
VIEWED = "post.viewed"
VIEWERS = "viewers"  # the daily counter of viewer-days, the member-days of VIEWER
# Every replica's gap maintenance takes this transaction lock (PostgreSQL), so a batch
# reads the neighbouring days other batches committed instead of missing them.
GAPS_LOCK = 7_340_071
IDS_PER_QUERY = 500

GapKey = tuple[str, date, int]  # scope, day, gap


def gap_changes(days: Iterable[date], new: Iterable[date]) -> Counter[tuple[date, int]]:
    """How one member's ``(day, gap)`` counts move when ``new`` days join the others.

    ``days`` is every active day now (the new ones included). Only the new days and the
    old day right after each of them change their previous active day.
    """
    final = sorted(set(days))
    fresh = set(new)
    old = [d for d in final if d not in fresh]
    touched = set(fresh)
    for day in fresh:
        at = bisect.bisect_right(final, day)
        if at < len(final) and final[at] not in fresh:
            touched.add(final[at])
    changes: Counter[tuple[date, int]] = Counter()
    for day in touched:
        before = _previous(final, day)
        if before is not None:
            changes[(day, (day - before).days)] += 1
        if day not in fresh:
            was = _previous(old, day)
            if was is not None:
                changes[(day, (day - was).days)] -= 1
    return Counter({key: n for key, n in changes.items() if n and key[1] < MAX_WINDOW_DAYS})


def one_new_day(day: date, before: date | None, after: date | None) -> list[tuple[date, int, int]]:
    """``gap_changes`` for a member's one new day, as (day, gap, change), from their nearest
    old days before and after it within the longest window (None: none there).

    Nearly every new member-day of a batch is its member's only one: it gains the gap
    from the day before it, and the day after it now counts from it instead.
    """
    moves = []
    if before is not None:
        moves.append((day, (day - before).days, 1))
    if after is not None:
        moves.append((after, (after - day).days, 1))
        if before is not None and (after - before).days < MAX_WINDOW_DAYS:
            moves.append((after, (after - before).days, -1))
    return moves


def _previous(days: list[date], day: date) -> date | None:
    at = bisect.bisect_left(days, day)
    return days[at - 1] if at else None


def insert_days(
    session: Session, kind: str, columns: Columns
) -> tuple[list[tuple[str, date, str]], Counter[GapKey]]:
    """Insert the member-day rows not there yet: the (scope, day, member) really inserted
    (a replay inserts nothing), and how the gap counts move for them.

    PostgreSQL: one statement inserts and, per inserted day, finds the member's nearest
    days before and after it that were there already (the statement's snapshot predates
    its own insert), within the longest window. Those and the batch's new days are all
    ``gap_changes`` needs (tests/analytics/test_ingest.py proves it against every day).
    SQLite: insert, then read the members' days around the new ones.
    """
    if not size_of(columns):
        return [], Counter()
    if not is_postgres(session):
        model = _model(kind)
        keys = list(table_of(model).primary_key.columns.keys())
        # The keys end (..., day, member_id) in both tables.
        written = [(key[0], key[-2], key[-1]) for key in insert_new(session, model, columns, keys)]
        return written, gap_deltas(session, kind, written)
    shape, params = encode(session, _model(kind), columns)
    stmt = cached(session, ("insert_days", kind, shape), lambda: _insert_days(session, kind, shape))
    found = session.execute(stmt, params).all()
    new_days = Counter((scope, member) for scope, _, member, _, _ in found)
    inserted: list[tuple[str, date, str]] = []
    moves: Counter[GapKey] = Counter()
    several: dict[tuple[str, str], list[date]] = defaultdict(list)
    for scope, day, member, before, after in found:
        inserted.append((scope, day, member))
        if new_days[(scope, member)] > 1:
            several[(scope, member)] += [d for d in (before, after) if d is not None]
            continue
        for moved, gap, n in one_new_day(day, before, after):
            moves[(scope, moved, gap)] += n
    if several:
        moves.update(_moves([row for row in inserted if (row[0], row[2]) in several], several))
    return inserted, moves


def _model(kind: str) -> Any:
    return MemberActivityDay if kind == ACTIVE else MemberEventDay


def _insert_days(session: Session, kind: str, shape: Shape) -> Any:
    model = _model(kind)
    table = table_of(model)
    new = (
        insert_rows(session, model, shape)
        .on_conflict_do_nothing(index_elements=list(table.primary_key.columns.keys()))
        .returning(table.c.scope, table.c.day, table.c.member_id)
        .cte("new")
    )
    old = table.alias("old")
    same = [old.c.scope == new.c.scope, old.c.member_id == new.c.member_id]
    if kind == VIEWER:
        # A literal, not a parameter: the planner may then use the partial viewer index.
        same.append(old.c.event_type == literal(VIEWED, literal_execute=True))
    before = select(func.max(old.c.day)).where(
        *same, old.c.day < new.c.day, old.c.day > new.c.day - MAX_WINDOW_DAYS
    )
    after = select(func.min(old.c.day)).where(
        *same, old.c.day > new.c.day, old.c.day < new.c.day + MAX_WINDOW_DAYS
    )
    return select(
        new.c.scope, new.c.day, new.c.member_id, before.scalar_subquery(), after.scalar_subquery()
    )


def gap_deltas(
    session: Session, kind: str, rows: Iterable[tuple[str, date, str]]
) -> Counter[GapKey]:
    """How the gap counts move for the member-day rows (scope, day, member) just inserted."""
    rows = list(rows)
    if not rows:
        return Counter()
    every = [day for _, day, _ in rows]
    # A neighbour further than the longest window changes no gap that is kept.
    lo = min(every) - timedelta(days=MAX_WINDOW_DAYS)
    hi = max(every) + timedelta(days=MAX_WINDOW_DAYS)
    wanted = {(scope, member) for scope, _, member in rows}
    scopes = sorted({scope for scope, _ in wanted})
    members = sorted({member for _, member in wanted})
    days: dict[tuple[str, str], list[date]] = defaultdict(list)
    for at in range(0, len(members), IDS_PER_QUERY):
        chunk = members[at : at + IDS_PER_QUERY]
        for scope, member, day in session.execute(_neighbours(kind, scopes, chunk, lo, hi)):
            if (scope, member) in wanted:
                days[(scope, member)].append(day)
    return _moves(rows, days)


def _moves(
    rows: Iterable[tuple[str, date, str]], days: Mapping[tuple[str, str], list[date]]
) -> Counter[GapKey]:
    """The gap count changes of the new ``rows``, given other days of their members."""
    new: dict[tuple[str, str], set[date]] = defaultdict(set)
    for scope, day, member in rows:
        new[(scope, member)].add(day)
    totals: Counter[GapKey] = Counter()
    for (scope, member), fresh in new.items():
        for (day, gap), n in gap_changes([*days.get((scope, member), ()), *fresh], fresh).items():
            totals[(scope, day, gap)] += n
    return totals


def _neighbours(kind: str, scopes: list[str], members: list[str], lo: date, hi: date) -> Any:
    if kind == ACTIVE:
        return select(
            MemberActivityDay.scope, MemberActivityDay.member_id, MemberActivityDay.day
        ).where(
            MemberActivityDay.scope.in_(scopes),
            MemberActivityDay.member_id.in_(members),
            MemberActivityDay.day.between(lo, hi),
        )
    return select(MemberEventDay.scope, MemberEventDay.member_id, MemberEventDay.day).where(
        MemberEventDay.member_id.in_(members),
        MemberEventDay.event_type == literal(VIEWED, literal_execute=True),
        MemberEventDay.scope.in_(scopes),
        MemberEventDay.day.between(lo, hi),
    )


def lock_gaps(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": GAPS_LOCK})


async def distinct_members(
    session: AsyncSession,
    scope: str,
    kind: str,
    windows: list[Period],
    member_days: Mapping[date, int],
) -> list[int]:
    """Distinct members active (or viewing) in each window; ``member_days`` per day must
    cover every window (the ``active_members`` or ``viewers`` daily counter)."""
    reach: dict[date, int] = {}  # per day, the largest gap a window asks about
    for window in windows:
        if window.days > MAX_WINDOW_DAYS:
            raise ValueError(f"windows span at most {MAX_WINDOW_DAYS} days")
        for k in range(1, window.days):
            day = window.start + timedelta(days=k)
            reach[day] = max(reach.get(day, 0), k)
    cells: dict[date, list[tuple[int, int]]] = defaultdict(list)
    for day, gap, members in await _cells(session, scope, kind, reach):
        if gap <= reach.get(day, 0):
            cells[day].append((int(gap), int(members)))
    gaps: dict[date, tuple[list[int], list[int]]] = {}
    for day, found in cells.items():
        found.sort()
        gaps[day] = ([g for g, _ in found], list(accumulate(n for _, n in found)))
    counts: list[int] = []
    for window in windows:
        total = 0
        for k in range(window.days):
            day = window.start + timedelta(days=k)
            total += member_days.get(day, 0)
            if k and day in gaps:
                keys, sums = gaps[day]
                upto = bisect.bisect_right(keys, k)
                total -= sums[upto - 1] if upto else 0
        counts.append(total)
    return counts


# One exact index range per asked day, (day, 1)..(day, largest gap asked): a nested loop
# over the days, one statement whatever the windows, so PostgreSQL plans it once.
CELLS = text(
    "SELECT g.day, g.gap, g.members "
    "FROM unnest(CAST(:days AS date[]), CAST(:gaps AS integer[])) AS w(day, reach) "
    "JOIN activity_gaps AS g ON g.scope = :scope AND g.kind = :kind "
    "AND g.day = w.day AND g.gap <= w.reach"
)


async def _cells(
    session: AsyncSession, scope: str, kind: str, reach: dict[date, int]
) -> list[tuple[date, int, int]]:
    if not reach:
        return []
    if session.get_bind().dialect.name == "postgresql":
        days = sorted(reach)
        params = {"days": days, "gaps": [reach[d] for d in days], "scope": scope, "kind": kind}
        rows = await session.execute(CELLS, params)
    else:
        # SQLite (development and tests): the day range, filtered by the caller.
        rows = await session.execute(
            select(ActivityGap.day, ActivityGap.gap, ActivityGap.members).where(
                ActivityGap.scope == scope,
                ActivityGap.kind == kind,
                ActivityGap.day.between(min(reach), max(reach)),
                ActivityGap.gap <= max(reach.values()),
            )
        )
    return [(day, int(gap), int(members)) for day, gap, members in rows.all()]


def rebuild_statements(dialect: str) -> list[str]:
    """SQL that fills ``activity_gaps`` and the ``viewers`` counter from the per-member rows."""
    gap = (
        "day - prev"
        if dialect == "postgresql"
        else "CAST(julianday(day) - julianday(prev) AS INTEGER)"
    )
    statements = []
    for kind, source, where in (
        (ACTIVE, "member_activity_days", ""),
        (VIEWER, "member_event_days", f"WHERE event_type = '{VIEWED}'"),
    ):
        statements.append(
            "INSERT INTO activity_gaps (scope, kind, day, gap, members) "  # noqa: S608
            f"SELECT scope, '{kind}', day, gap, count(*) FROM ("
            f"SELECT scope, day, {gap} AS gap FROM ("
            "SELECT scope, day, lag(day) OVER (PARTITION BY scope, member_id ORDER BY day) AS prev "
            f"FROM {source} {where}) AS days) AS gaps "
            f"WHERE gap < {MAX_WINDOW_DAYS} GROUP BY scope, day, gap"
        )
    statements.append(
        "INSERT INTO daily_counters (scope, day, metric, dimension, value) "  # noqa: S608
        f"SELECT scope, day, '{VIEWERS}', '', count(*) FROM member_event_days "
        f"WHERE event_type = '{VIEWED}' GROUP BY scope, day"
    )
    return statements


async def rebuild(session: AsyncSession) -> None:
    """Recompute the gap counts and the viewers counter from the per-member rows."""
    await session.execute(delete(ActivityGap))
    await session.execute(delete(DailyCounter).where(DailyCounter.metric == VIEWERS))
    dialect = session.get_bind().dialect.name
    for statement in rebuild_statements(dialect):
        await session.execute(text(statement))
