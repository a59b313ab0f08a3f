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
from sqlalchemy import bindparam, event, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from services.analytics.bulk import (
    ADD,
    EARLIEST,
    LATEST,
    NEW,
    NEW_UNLESS_NULL,
    insert_missing,
    insert_new,
    one_of,
    table_of,
    upsert,
)
from services.analytics.models import (
    PLATFORM,
    ActivityGap,
    CampaignMemberStep,
    DailyCounter,
    DailyMemberGrowth,
    ErasedMember,
    Freshness,
    HourlyActivity,
    MemberEventDay,
    MemberScoreDay,
    PostStats,
    PostViewer,
    RawEvent,
    ScopeMember,
)
from services.analytics.raw import ERASED_LATER, row_of, scrub
from services.analytics.windows import ACTIVE, VIEWED, VIEWER, VIEWERS, insert_days, lock_gaps
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


def _flush(session: Session) -> None:
    buffer: RollupBuffer | None = session.info.pop(KEY, None)
    if buffer is None or (buffer.events == 0 and not buffer.raw):
        return
    ids = buffer.member_ids()
    erased: set[str] = {ERASED_LATER}
    if ids:
        erased |= set(
            session.scalars(
                select(ErasedMember.member_id).where(one_of(session, ErasedMember.member_id, ids))
            )
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
    inserted, active_gaps = insert_days(session, ACTIVE, active_rows)
    for scope, day, _ in inserted:
        buffer.counter(scope, day, "active_members")
    # A viewer-day inserted now is new reach; one already there only moves first/last.
    viewed, viewer_gaps = insert_days(session, VIEWER, view_rows)
    for scope, day, member in viewed:
        buffer.counter(scope, day, VIEWERS)
        del steps[(scope, VIEWED, day, member)]
    gaps = {ACTIVE: active_gaps, VIEWER: viewer_gaps}
    upsert(
        session,
        ActivityGap,
        [
            {"scope": s, "kind": kind, "day": d, "gap": g, "members": n}
            for kind, deltas in gaps.items()
            for (s, d, g), n in sorted(deltas.items())
        ],
        ["scope", "kind", "day", "gap"],
        {"members": ADD},
    )

    _flush_memberships(session, buffer, erased)
    viewer_rows = [{"post_id": p, "member_id": m} for p, m in buffer.viewers if m not in erased]
    for post_id, _ in insert_new(session, PostViewer, viewer_rows, ["post_id", "member_id"]):
        buffer.posts[post_id].counts["reach"] += 1

    upsert(
        session,
        DailyCounter,
        [
            {"scope": s, "day": d, "metric": m, "dimension": dim, "value": v}
            for (s, d, m, dim), v in buffer.counters.items()
        ],
        ["scope", "day", "metric", "dimension"],
        {"value": ADD},
    )
    upsert(
        session,
        HourlyActivity,
        [{"scope": s, "hour_start": h, "actions": v} for (s, h), v in buffer.hourly.items()],
        ["scope", "hour_start"],
        {"actions": ADD},
    )
    upsert(
        session,
        MemberEventDay,
        [
            {"scope": s, "event_type": e, "day": d, "member_id": m, "first_at": f, "last_at": la}
            for (s, e, d, m), (f, la) in steps.items()
        ],
        ["scope", "event_type", "day", "member_id"],
        {"first_at": EARLIEST, "last_at": LATEST},
    )
    upsert(
        session,
        MemberScoreDay,
        [
            {"scope": s, "day": d, "member_id": m, "initiated": i, "received": r}
            for (s, d, m), (i, r) in buffer.scores.items()
            if m not in erased
        ],
        ["scope", "day", "member_id"],
        {"initiated": ADD, "received": ADD},
    )
    _flush_posts(session, buffer, erased)
    upsert(
        session,
        CampaignMemberStep,
        [
            {"campaign_id": c, "step": s, "member_id": m, "first_at": at}
            for (c, s, m), at in buffer.campaign_steps.items()
            if m not in erased
        ],
        ["campaign_id", "step", "member_id"],
        {"first_at": EARLIEST},
    )
    assert buffer.as_of is not None
    session.info[COMMITTED_AS_OF] = buffer.as_of
    now = utcnow()
    upsert(
        session,
        Freshness,
        [{"id": 1, "as_of": buffer.as_of, "applied_at": now, "events_applied": buffer.events}],
        ["id"],
        {"as_of": LATEST, "applied_at": NEW, "events_applied": ADD},
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
    insert_missing(session, RawEvent, rows, ["event_id"])


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
    new = set(insert_new(session, ScopeMember, rows, ["scope", "member_id"]))
    rejoined = []
    for (scope, member), (_, day, channel) in joins.items():
        if (scope, member) in new:
            _joined(buffer, scope, day, channel)
        else:
            rejoined.append({"s": scope, "m": member})
    table = table_of(ScopeMember)
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
                if insert_new(session, ScopeMember, [row], ["scope", "member_id"]):
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
    upsert(
        session,
        DailyMemberGrowth,
        [{"day": day, "registered": n} for day, n in sorted(buffer.registrations.items())],
        ["day"],
        {"registered": ADD},
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
    upsert(
        session,
        PostStats,
        rows,
        ["post_id"],
        {
            **dict.fromkeys(
                ("author_id", "author_kind", "post_type", "published_at"), NEW_UNLESS_NULL
            ),
            **dict.fromkeys((*POST_COUNTERS, "reach"), ADD),
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
