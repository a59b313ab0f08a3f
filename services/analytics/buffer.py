"""Per-transaction rollup buffer: a consumer batch of 500 events becomes a few bulk upserts.

Handlers add deltas to the buffer in ``session.info``; just before the transaction
commits, ``before_commit`` writes them with one statement per table, so the effect
still commits atomically with the inbox rows of the batch. A rollback drops the
buffer with the transaction. Rows of erased members are filtered out here, in one
query per flush, instead of one lookup per event.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from prometheus_client import Gauge
from sqlalchemy import Table, bindparam, case, event, func, select
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from services.analytics.models import (
    PLATFORM,
    ActivityGap,
    CampaignMemberStep,
    DailyCounter,
    DailyMemberGrowth,
    ErasedMember,
    Freshness,
    HourlyActivity,
    MemberActivityDay,
    MemberEventDay,
    MemberScoreDay,
    PostStats,
    PostViewer,
    RawEvent,
    ScopeMember,
)
from services.analytics.raw import ERASED_LATER, row_of, scrub
from services.analytics.windows import ACTIVE, VIEWED, VIEWER, VIEWERS, gap_deltas, lock_gaps
from shared.consumer import ConsumedEvent
from shared.db import utcnow

KEY = "analytics.rollups"
COMMITTED_AS_OF = "analytics.as_of"
AS_OF = Gauge(
    "analytics_rollups_as_of_timestamp_seconds",
    "Newest event time (Unix seconds) this replica has committed into the rollups.",
)
APPLIED_AT = Gauge(
    "analytics_rollups_applied_timestamp_seconds",
    "When this replica last committed rollups (Unix seconds); minus the event's commit "
    "time in its producer, the event-to-metric freshness.",
)
CHUNK = 1000  # rows per statement: far below SQLite's bound-variable limit
POST_COUNTERS = ("comments", "reactions", "shares", "answers", "views", "views_via_share")


@dataclass
class PostDelta:
    community_id: str
    facts: dict[str, Any] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)


@dataclass
class RollupBuffer:
    counters: Counter[tuple[str, date, str, str]] = field(default_factory=Counter)
    hourly: Counter[tuple[str, datetime]] = field(default_factory=Counter)
    active: set[tuple[str, date, str]] = field(default_factory=set)
    steps: dict[tuple[str, str, date, str], list[datetime]] = field(default_factory=dict)
    scores: dict[tuple[str, date, str], list[float]] = field(default_factory=dict)
    posts: dict[str, PostDelta] = field(default_factory=dict)
    viewers: set[tuple[str, str]] = field(default_factory=set)
    campaign_steps: dict[tuple[str, str, str], datetime] = field(default_factory=dict)
    registrations: Counter[date] = field(default_factory=Counter)
    # (op, scope, member, day, channel) in event order: joins and leaves of one member
    # in one batch must apply in the order they happened.
    memberships: list[tuple[str, str, str, date, str]] = field(default_factory=list)
    raw: list[dict[str, Any]] = field(default_factory=list)  # raw_events rows of the batch
    as_of: datetime | None = None
    events: int = 0

    def record(self, event: ConsumedEvent) -> None:
        self.raw.append(row_of(event))

    def counter(self, scope: str, day: date, metric: str, amount: int = 1, dim: str = "") -> None:
        self.counters[(scope, day, metric, dim)] += amount

    def step(self, scope: str, event_type: str, member_id: str, at: datetime) -> None:
        key = (scope, event_type, at.date(), member_id)
        span = self.steps.get(key)
        if span is None:
            self.steps[key] = [at, at]
        else:
            span[0], span[1] = min(span[0], at), max(span[1], at)

    def score(
        self, scope: str, day: date, member_id: str, initiated: float, received: float
    ) -> None:
        totals = self.scores.setdefault((scope, day, member_id), [0.0, 0.0])
        totals[0] += initiated
        totals[1] += received

    def post(self, post_id: str, community_id: str) -> PostDelta:
        return self.posts.setdefault(post_id, PostDelta(community_id))

    def campaign_step(self, campaign_id: str, step: str, member_id: str, at: datetime) -> None:
        key = (campaign_id, step, member_id)
        self.campaign_steps[key] = min(at, self.campaign_steps.get(key, at))

    def membership(self, op: str, scope: str, member_id: str, day: date, channel: str = "") -> None:
        self.memberships.append((op, scope, member_id, day, channel))

    def applied(self, at: datetime) -> None:
        self.events += 1
        self.as_of = at if self.as_of is None else max(self.as_of, at)

    def member_ids(self) -> set[str]:
        ids = {m for _, _, m in self.active} | {k[3] for k in self.steps}
        ids |= {m for _, _, m in self.scores} | {m for _, m in self.viewers}
        ids |= {m for _, _, m in self.campaign_steps}
        ids |= {d.facts["author_id"] for d in self.posts.values() if d.facts.get("author_id")}
        ids |= {m for _, _, m, _, _ in self.memberships}
        ids |= {row[k] for row in self.raw for k in ("member_id", "related_id") if row[k]}
        return ids


def buffer_of(session: AsyncSession) -> RollupBuffer:
    buffer: RollupBuffer | None = session.info.get(KEY)
    if buffer is None:
        buffer = session.info[KEY] = RollupBuffer()
    return buffer


async def flush(session: AsyncSession) -> None:
    """Write the buffer now (erasure needs every earlier row in place before it re-keys)."""
    await session.run_sync(_flush)


def _table(model: Any) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


def _insert(session: Session, model: Any) -> Any:
    name = session.get_bind().dialect.name
    return (pg.insert if name == "postgresql" else sqlite.insert)(_table(model))


def _chunks(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return [rows[i : i + CHUNK] for i in range(0, len(rows), CHUNK)]


def _upsert(
    session: Session, model: Any, rows: list[dict[str, Any]], keys: list[str], set_: Any
) -> None:
    if not rows:
        return
    stmt = _insert(session, model)
    stmt = stmt.on_conflict_do_update(index_elements=keys, set_=set_(_table(model), stmt.excluded))
    for chunk in _chunks(rows):
        session.execute(stmt, chunk)


def _insert_new(
    session: Session, model: Any, rows: list[dict[str, Any]], keys: list[str]
) -> list[Any]:
    """Insert rows that are not there yet; returns the key tuples actually inserted."""
    inserted: list[Any] = []
    table = _table(model)
    # Parameters, not a literal VALUES list: the statement compiles once and is cached
    # (compiling a 1,000-row VALUES per batch cost more than running it).
    stmt = (
        _insert(session, model)
        .on_conflict_do_nothing(index_elements=keys)
        .returning(*(table.c[k] for k in keys))
    )
    for chunk in _chunks(rows):
        inserted += [tuple(row) for row in session.execute(stmt, chunk)]
    return inserted


def _earliest(column: Any, new: Any) -> Any:
    return case((new < column, new), else_=column)


def _latest(column: Any, new: Any) -> Any:
    return case((new > column, new), else_=column)


def _flush(session: Session) -> None:
    buffer: RollupBuffer | None = session.info.pop(KEY, None)
    if buffer is None or (buffer.events == 0 and not buffer.raw):
        return
    ids = buffer.member_ids()
    erased: set[str] = {ERASED_LATER}
    if ids:
        erased |= set(
            session.scalars(select(ErasedMember.member_id).where(ErasedMember.member_id.in_(ids)))
        )
    _flush_raw(session, buffer, erased)
    if buffer.events == 0:
        return

    active_rows = [
        {"scope": s, "day": d, "member_id": m}
        for s, d, m in sorted(buffer.active)
        if m not in erased
    ]
    steps = {key: span for key, span in buffer.steps.items() if key[3] not in erased}
    view_rows = sorted(
        (
            {"scope": s, "event_type": e, "day": d, "member_id": m, "first_at": f, "last_at": la}
            for (s, e, d, m), (f, la) in steps.items()
            if e == VIEWED
        ),
        key=lambda row: (row["scope"], row["day"], row["member_id"]),
    )
    if active_rows or view_rows:
        lock_gaps(session)
    inserted = _insert_new(session, MemberActivityDay, active_rows, ["scope", "day", "member_id"])
    for scope, day, _ in inserted:
        buffer.counter(scope, day, "active_members")
    gaps = {ACTIVE: gap_deltas(session, ACTIVE, inserted)}
    # A viewer-day inserted now is new reach; one already there only moves first/last.
    viewed = _insert_new(
        session, MemberEventDay, view_rows, ["scope", "event_type", "day", "member_id"]
    )
    for scope, _, day, member in viewed:
        buffer.counter(scope, day, VIEWERS)
        del steps[(scope, VIEWED, day, member)]
    gaps[VIEWER] = gap_deltas(session, VIEWER, [(s, d, m) for s, _, d, m in viewed])
    _upsert(
        session,
        ActivityGap,
        [
            {"scope": s, "kind": kind, "day": d, "gap": g, "members": n}
            for kind, deltas in gaps.items()
            for (s, d, g), n in sorted(deltas.items())
        ],
        ["scope", "kind", "day", "gap"],
        lambda t, x: {"members": t.c.members + x.members},
    )

    _flush_memberships(session, buffer, erased)
    viewer_rows = [{"post_id": p, "member_id": m} for p, m in buffer.viewers if m not in erased]
    for post_id, _ in _insert_new(session, PostViewer, viewer_rows, ["post_id", "member_id"]):
        buffer.posts[post_id].counts["reach"] += 1

    _upsert(
        session,
        DailyCounter,
        [
            {"scope": s, "day": d, "metric": m, "dimension": dim, "value": v}
            for (s, d, m, dim), v in buffer.counters.items()
        ],
        ["scope", "day", "metric", "dimension"],
        lambda t, x: {"value": t.c.value + x.value},
    )
    _upsert(
        session,
        HourlyActivity,
        [{"scope": s, "hour_start": h, "actions": v} for (s, h), v in buffer.hourly.items()],
        ["scope", "hour_start"],
        lambda t, x: {"actions": t.c.actions + x.actions},
    )
    _upsert(
        session,
        MemberEventDay,
        [
            {"scope": s, "event_type": e, "day": d, "member_id": m, "first_at": f, "last_at": la}
            for (s, e, d, m), (f, la) in steps.items()
        ],
        ["scope", "event_type", "day", "member_id"],
        lambda t, x: {
            "first_at": _earliest(t.c.first_at, x.first_at),
            "last_at": _latest(t.c.last_at, x.last_at),
        },
    )
    _upsert(
        session,
        MemberScoreDay,
        [
            {"scope": s, "day": d, "member_id": m, "initiated": i, "received": r}
            for (s, d, m), (i, r) in buffer.scores.items()
            if m not in erased
        ],
        ["scope", "day", "member_id"],
        lambda t, x: {
            "initiated": t.c.initiated + x.initiated,
            "received": t.c.received + x.received,
        },
    )
    _flush_posts(session, buffer, erased)
    _upsert(
        session,
        CampaignMemberStep,
        [
            {"campaign_id": c, "step": s, "member_id": m, "first_at": at}
            for (c, s, m), at in buffer.campaign_steps.items()
            if m not in erased
        ],
        ["campaign_id", "step", "member_id"],
        lambda t, x: {"first_at": _earliest(t.c.first_at, x.first_at)},
    )
    assert buffer.as_of is not None
    session.info[COMMITTED_AS_OF] = buffer.as_of
    now = utcnow()
    _upsert(
        session,
        Freshness,
        [{"id": 1, "as_of": buffer.as_of, "applied_at": now, "events_applied": buffer.events}],
        ["id"],
        lambda t, x: {
            "as_of": _latest(t.c.as_of, x.as_of),
            "applied_at": x.applied_at,
            "events_applied": t.c.events_applied + x.events_applied,
        },
    )


def _joined(buffer: RollupBuffer, scope: str, day: date, channel: str) -> None:
    """A member new to the scope (a rejoin after leaving is not new)."""
    buffer.counter(scope, day, "new_members")
    if scope == PLATFORM:
        buffer.counter(scope, day, "new_members", dim=channel)
        buffer.registrations[day] += 1


def _flush_raw(session: Session, buffer: RollupBuffer, erased: set[str]) -> None:
    """Insert the batch's events into the raw store; a replayed event id adds nothing.

    An event about a member already erased is stored scrubbed (``ERASED_LATER``), just as
    its rollups keep counts only.
    """
    if not buffer.raw:
        return
    later = dict.fromkeys(erased, ERASED_LATER)
    now = utcnow()
    rows = [
        {
            **(scrub(row, later) if {row["member_id"], row["related_id"]} & erased else row),
            "received_at": now,
        }
        for row in buffer.raw
    ]
    stmt = _insert(session, RawEvent).on_conflict_do_nothing(index_elements=["event_id"])
    for chunk in _chunks(rows):
        session.execute(stmt, chunk)


def _flush_memberships(session: Session, buffer: RollupBuffer, erased: set[str]) -> None:
    ops: dict[tuple[str, str], list[tuple[str, date, str]]] = {}
    for op, scope, member, day, channel in buffer.memberships:
        if member in erased:
            # Erased before this arrived: a join still counts, but no row names them again.
            if op == "join":
                _joined(buffer, scope, day, channel)
            continue
        ops.setdefault((scope, member), []).append((op, day, channel))
    # Nearly always one join per member and scope: one insert for all of them.
    joins = {key: o[0] for key, o in ops.items() if len(o) == 1 and o[0][0] == "join"}
    rows = [
        {"scope": s, "member_id": m, "joined_on": day, "channel": channel}
        for (s, m), (_, day, channel) in sorted(joins.items())
    ]
    new = set(_insert_new(session, ScopeMember, rows, ["scope", "member_id"]))
    rejoined = []
    for (scope, member), (_, day, channel) in joins.items():
        if (scope, member) in new:
            _joined(buffer, scope, day, channel)
        else:
            rejoined.append({"s": scope, "m": member})
    table = _table(ScopeMember)
    rejoin = (
        table.update()
        .where(table.c.scope == bindparam("s"), table.c.member_id == bindparam("m"))
        .values(left_on=None)
    )
    if rejoined:
        session.execute(rejoin, rejoined)
    for (scope, member), sequence in ops.items():
        if (scope, member) in joins:
            continue
        for op, day, channel in sequence:
            if op == "join":
                row = {"scope": scope, "member_id": member, "joined_on": day, "channel": channel}
                if _insert_new(session, ScopeMember, [row], ["scope", "member_id"]):
                    _joined(buffer, scope, day, channel)
                else:
                    session.execute(rejoin, [{"s": scope, "m": member}])
                continue
            left = session.execute(
                table.update()
                .where(
                    table.c.scope == scope,
                    table.c.member_id == member,
                    table.c.left_on.is_(None),
                )
                .values(left_on=day)
            )
            if getattr(left, "rowcount", 0):
                buffer.counter(scope, day, "left")
    _upsert(
        session,
        DailyMemberGrowth,
        [{"day": day, "registered": n} for day, n in sorted(buffer.registrations.items())],
        ["day"],
        lambda t, x: {"registered": t.c.registered + x.registered},
    )


def _flush_posts(session: Session, buffer: RollupBuffer, erased: set[str]) -> None:
    rows: list[dict[str, Any]] = []
    for post_id, delta in buffer.posts.items():
        facts = {"author_id": None, "author_kind": None, "post_type": None, "published_at": None}
        facts.update(delta.facts)
        if facts["author_id"] in erased:
            facts["author_id"] = None
        counts = {name: delta.counts.get(name, 0) for name in (*POST_COUNTERS, "reach")}
        rows.append({"post_id": post_id, "community_id": delta.community_id, **facts, **counts})
    # Facts arrive with post.published only; a NULL in the new row keeps what is there.
    _upsert(
        session,
        PostStats,
        rows,
        ["post_id"],
        lambda t, x: {
            **{
                name: func.coalesce(x[name], t.c[name])
                for name in ("author_id", "author_kind", "post_type", "published_at")
            },
            **{name: t.c[name] + x[name] for name in (*POST_COUNTERS, "reach")},
        },
    )


def _drop(session: Session) -> None:
    session.info.pop(KEY, None)
    session.info.pop(COMMITTED_AS_OF, None)


_newest = [0.0]


def _committed(session: Session) -> None:
    as_of: datetime | None = session.info.pop(COMMITTED_AS_OF, None)
    if as_of is not None:
        _newest[0] = max(_newest[0], as_of.timestamp())
        AS_OF.set(_newest[0])
        APPLIED_AT.set_to_current_time()


event.listen(Session, "before_commit", _flush)
event.listen(Session, "after_rollback", _drop)
event.listen(Session, "after_commit", _committed)
