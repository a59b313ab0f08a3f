"""Per-transaction rollup buffer: a consumer batch of 500 events becomes a few bulk upserts.

Handlers add deltas to the buffer in ``session.info``; just before the transaction
commits, ``before_commit`` writes them with one statement per table, so the effect
still commits atomically with the inbox rows of the batch. A rollback drops the
buffer with the transaction. Rows of erased members are filtered out here, in one
query per flush, instead of one lookup per event.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Mapping, Sequence
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
    Columns,
    insert_missing,
    insert_new,
    one_of,
    table_of,
    transposed,
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
from services.analytics.raw import (
    ERASED_LATER,
    RAW_COLUMNS,
    RAW_MEMBER,
    RAW_RELATED,
    RawRow,
    row_of,
    scrubbed,
)
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
POST_FACTS = ("author_id", "author_kind", "post_type", "published_at")
POST_COUNTERS = ("comments", "reactions", "shares", "answers", "views", "views_via_share", "reach")
ACTIVE_COLUMNS = ("scope", "day", "member_id")
STEP_COLUMNS = ("scope", "event_type", "day", "member_id", "first_at", "last_at")


StepKey = tuple[str, str, date, str]  # scope, event type, day, member
ScoreKey = tuple[str, date, str]  # scope, day, member
PostFacts = tuple[str | None, str | None, str | None, datetime | None]
NO_FACTS: PostFacts = (None, None, None, None)


@dataclass
class RollupBuffer:
    """A batch's deltas. Values are numbers and datetimes, keys tuples of them, never lists
    or objects: a batch keeps them across many young collections, and what the collector
    must track (a list per row) it promotes to the old generation, whose full collections
    profiled at a fifth of ingest's CPU where the startup heap is not frozen."""

    # defaultdicts, not Counters: a missing key costs a C call instead of a Python one.
    counters: defaultdict[tuple[str, date, str, str], int] = field(
        default_factory=lambda: defaultdict(int)
    )
    hourly: defaultdict[tuple[str, datetime], int] = field(default_factory=lambda: defaultdict(int))
    active: set[tuple[str, date, str]] = field(default_factory=set)
    step_first: dict[StepKey, datetime] = field(default_factory=dict)
    step_last: dict[StepKey, datetime] = field(default_factory=dict)
    initiated: defaultdict[ScoreKey, float] = field(default_factory=lambda: defaultdict(float))
    received: defaultdict[ScoreKey, float] = field(default_factory=lambda: defaultdict(float))
    post_community: dict[str, str] = field(default_factory=dict)
    post_facts: dict[str, PostFacts] = field(default_factory=dict)
    post_counts: defaultdict[tuple[str, str], int] = field(  # (post, counter): count
        default_factory=lambda: defaultdict(int)
    )
    viewers: set[tuple[str, str]] = field(default_factory=set)
    campaign_steps: dict[tuple[str, str, str], datetime] = field(default_factory=dict)
    registrations: Counter[date] = field(default_factory=Counter)
    # (op, scope, member, day, channel) in event order: joins and leaves of one member
    # in one batch must apply in the order they happened.
    memberships: list[tuple[str, str, str, date, str]] = field(default_factory=list)
    raw: list[RawRow] = field(default_factory=list)  # raw_events rows of the batch
    as_of: datetime | None = None
    events: int = 0

    def record(self, event: ConsumedEvent) -> None:
        self.raw.append(row_of(event))

    def counter(self, scope: str, day: date, metric: str, amount: int = 1, dim: str = "") -> None:
        self.counters[(scope, day, metric, dim)] += amount

    def step(self, scope: str, event_type: str, member_id: str, at: datetime) -> None:
        key = (scope, event_type, at.date(), member_id)
        first = self.step_first.get(key)
        if first is None:
            self.step_first[key] = self.step_last[key] = at
        elif at < first:
            self.step_first[key] = at
        elif at > self.step_last[key]:
            self.step_last[key] = at

    def post(self, post_id: str, community_id: str, counter: str) -> None:
        self.post_community.setdefault(post_id, community_id)
        self.post_counts[(post_id, counter)] += 1

    def campaign_step(self, campaign_id: str, step: str, member_id: str, at: datetime) -> None:
        key = (campaign_id, step, member_id)
        self.campaign_steps[key] = min(at, self.campaign_steps.get(key, at))

    def membership(self, op: str, scope: str, member_id: str, day: date, channel: str = "") -> None:
        self.memberships.append((op, scope, member_id, day, channel))

    def applied(self, at: datetime) -> None:
        self.events += 1
        if self.as_of is None or at > self.as_of:
            self.as_of = at

    def member_ids(self) -> set[str]:
        ids = {m for _, _, m in self.active} | {k[3] for k in self.step_first}
        ids |= {m for _, _, m in self.initiated} | {m for _, _, m in self.received}
        ids |= {m for _, m in self.viewers} | {m for _, _, m in self.campaign_steps}
        ids |= {facts[0] for facts in self.post_facts.values() if facts[0]}
        ids |= {m for _, _, m, _, _ in self.memberships}
        ids |= {row[RAW_MEMBER] for row in self.raw if row[RAW_MEMBER]}
        ids |= {row[RAW_RELATED] for row in self.raw if row[RAW_RELATED]}
        return ids


def buffer_of(session: AsyncSession) -> RollupBuffer:
    buffer: RollupBuffer | None = session.info.get(KEY)
    if buffer is None:
        buffer = session.info[KEY] = RollupBuffer()
    return buffer


async def flush(session: AsyncSession) -> None:
    """Write the buffer now (erasure needs every earlier row in place before it re-keys)."""
    await session.run_sync(_flush)


def columns(names: Sequence[str], keys: Collection[tuple[Any, ...]], *values: Any) -> Columns:
    """Rows by column, named ``names``: the parts of each key tuple, then ``values`` (one
    sequence per column, in the keys' order)."""
    return dict(zip(names, [*transposed(keys, len(names) - len(values)), *values], strict=True))


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
    # Nearly always nobody in the batch is erased: then no row needs looking at.
    erased &= ids
    _flush_raw(session, buffer, erased)
    if buffer.events == 0:
        return

    active: Collection[tuple[str, date, str]] = buffer.active
    steps: Collection[StepKey] = buffer.step_first.keys()
    initiated: Mapping[ScoreKey, float] = buffer.initiated
    received: Mapping[ScoreKey, float] = buffer.received
    if erased:
        active = {key for key in active if key[2] not in erased}
        steps = {key for key in steps if key[3] not in erased}
        initiated = {k: v for k, v in initiated.items() if k[2] not in erased}
        received = {k: v for k, v in received.items() if k[2] not in erased}
    first, last = buffer.step_first, buffer.step_last
    viewed = [key for key in steps if key[1] == VIEWED]
    if active or viewed:
        lock_gaps(session)
    inserted, active_gaps = insert_days(session, ACTIVE, columns(ACTIVE_COLUMNS, active))
    for scope, day, _ in inserted:
        buffer.counter(scope, day, "active_members")
    # A viewer-day inserted now is new reach; one already there only moves first/last.
    inserted, viewer_gaps = insert_days(
        session,
        VIEWER,
        columns(STEP_COLUMNS, viewed, [first[k] for k in viewed], [last[k] for k in viewed]),
    )
    for scope, day, _ in inserted:
        buffer.counter(scope, day, VIEWERS)
    written = {(scope, VIEWED, day, member) for scope, day, member in inserted}
    gaps = {
        (scope, kind, day, gap): n
        for kind, deltas in ((ACTIVE, active_gaps), (VIEWER, viewer_gaps))
        for (scope, day, gap), n in deltas.items()
        if n
    }
    upsert(
        session,
        ActivityGap,
        columns(("scope", "kind", "day", "gap", "members"), gaps.keys(), list(gaps.values())),
        ["scope", "kind", "day", "gap"],
        {"members": ADD},
    )

    _flush_memberships(session, buffer, erased)
    viewers = [(p, m) for p, m in buffer.viewers if m not in erased] if erased else buffer.viewers
    for post_id, _ in insert_new(
        session, PostViewer, columns(("post_id", "member_id"), viewers), ["post_id", "member_id"]
    ):
        buffer.post_counts[(post_id, "reach")] += 1

    counters = buffer.counters
    upsert(
        session,
        DailyCounter,
        columns(
            ("scope", "day", "metric", "dimension", "value"), counters, list(counters.values())
        ),
        ["scope", "day", "metric", "dimension"],
        {"value": ADD},
    )
    hourly = buffer.hourly
    upsert(
        session,
        HourlyActivity,
        columns(("scope", "hour_start", "actions"), hourly, list(hourly.values())),
        ["scope", "hour_start"],
        {"actions": ADD},
    )
    rest = [key for key in steps if key not in written] if written else list(steps)
    upsert(
        session,
        MemberEventDay,
        columns(STEP_COLUMNS, rest, [first[k] for k in rest], [last[k] for k in rest]),
        ["scope", "event_type", "day", "member_id"],
        {"first_at": EARLIEST, "last_at": LATEST},
    )
    scored = list(initiated.keys() | received.keys())
    upsert(
        session,
        MemberScoreDay,
        columns(
            ("scope", "day", "member_id", "initiated", "received"),
            scored,
            [initiated.get(key, 0.0) for key in scored],
            [received.get(key, 0.0) for key in scored],
        ),
        ["scope", "day", "member_id"],
        {"initiated": ADD, "received": ADD},
    )
    _flush_posts(session, buffer, erased)
    campaign_steps = buffer.campaign_steps
    if erased:
        campaign_steps = {k: at for k, at in campaign_steps.items() if k[2] not in erased}
    upsert(
        session,
        CampaignMemberStep,
        columns(
            ("campaign_id", "step", "member_id", "first_at"),
            campaign_steps,
            list(campaign_steps.values()),
        ),
        ["campaign_id", "step", "member_id"],
        {"first_at": EARLIEST},
    )
    assert buffer.as_of is not None
    session.info[COMMITTED_AS_OF] = buffer.as_of
    upsert(
        session,
        Freshness,
        {
            "id": [1],
            "as_of": [buffer.as_of],
            "applied_at": [utcnow()],
            "events_applied": [buffer.events],
        },
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
    rows = buffer.raw
    if erased:
        later = dict.fromkeys(erased, ERASED_LATER)
        rows = [
            scrubbed(row, later) if row[RAW_MEMBER] in erased or row[RAW_RELATED] in erased else row
            for row in rows
        ]
    insert_missing(
        session,
        RawEvent,
        columns(RAW_COLUMNS, rows),
        ["event_id"],
        {"received_at": utcnow()},
    )


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
    ordered = sorted(joins.items())
    rows = columns(
        ("scope", "member_id", "joined_on", "channel"),
        [key for key, _ in ordered],
        [day for _, (_, day, _) in ordered],
        [channel for _, (_, _, channel) in ordered],
    )
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
                row: Columns = {
                    "scope": [scope],
                    "member_id": [member],
                    "joined_on": [day],
                    "channel": [channel],
                }
                if insert_new(session, ScopeMember, row, ["scope", "member_id"]):
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
    registrations = buffer.registrations
    upsert(
        session,
        DailyMemberGrowth,
        columns(("day", "registered"), [(day,) for day in registrations], registrations.values()),
        ["day"],
        {"registered": ADD},
    )


def _flush_posts(session: Session, buffer: RollupBuffer, erased: set[str]) -> None:
    posts = list(buffer.post_community)
    at = {post_id: n for n, post_id in enumerate(posts)}
    counts = {name: [0] * len(posts) for name in POST_COUNTERS}
    for (post_id, name), n in buffer.post_counts.items():
        counts[name][at[post_id]] = n
    facts = [buffer.post_facts.get(post_id, NO_FACTS) for post_id in posts]
    # Facts arrive with post.published only; a NULL in the new row keeps what is there.
    author_ids, author_kinds, post_types, published = transposed(facts, len(POST_FACTS))
    if erased:
        author_ids = [None if author in erased else author for author in author_ids]
    upsert(
        session,
        PostStats,
        {
            "post_id": posts,
            "community_id": list(buffer.post_community.values()),
            "author_id": author_ids,
            "author_kind": author_kinds,
            "post_type": post_types,
            "published_at": published,
            **counts,
        },
        ["post_id"],
        {
            **dict.fromkeys(POST_FACTS, NEW_UNLESS_NULL),
            **dict.fromkeys(POST_COUNTERS, ADD),
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
