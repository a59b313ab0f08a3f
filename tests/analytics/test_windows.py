"""Distinct members from the counters kept at ingest agree with a direct distinct count."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from datetime import date, timedelta

from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from services.analytics.models import ActivityGap
from services.analytics.periods import MAX_WINDOW_DAYS, Period
from services.analytics.windows import gap_changes, one_new_day, rebuild
from shared.events.contracts import campaigns, members
from shared.events.registry import EventData
from tests.analytics.conftest import MONDAY, Analytics, at, new_id

D = MONDAY + timedelta(days=60)
EPOCH = date(2026, 1, 1)


def gaps_from_scratch(days_of: dict[str, set[date]]) -> Counter[tuple[date, int]]:
    counts: Counter[tuple[date, int]] = Counter()
    for days in days_of.values():
        ordered = sorted(days)
        for before, day in itertools.pairwise(ordered):
            if (day - before).days < MAX_WINDOW_DAYS:
                counts[(day, (day - before).days)] += 1
    return counts


def distinct_from_gaps(
    gaps: Counter[tuple[date, int]], member_days: Counter[date], window: Period
) -> int:
    """The read formula of windows.py: member-days minus repeats inside the window."""
    total = 0
    for k in range(window.days):
        day = window.start + timedelta(days=k)
        total += member_days[day]
        total -= sum(n for (d, g), n in gaps.items() if d == day and g <= k)
    return total


actions = st.lists(
    st.tuples(st.sampled_from("abcde"), st.integers(min_value=0, max_value=60)),
    min_size=1,
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(actions=actions, start=st.integers(0, 60), length=st.integers(1, 40))
def test_gap_counts_kept_one_day_at_a_time_match_a_rebuild_and_a_distinct_count(
    actions: list[tuple[str, int]], start: int, length: int
) -> None:
    days_of: dict[str, set[date]] = {}
    gaps: Counter[tuple[date, int]] = Counter()
    member_days: Counter[date] = Counter()
    for member, offset in actions:  # any order, with repeats: a replay inserts nothing
        day = EPOCH + timedelta(days=offset)
        days = days_of.setdefault(member, set())
        if day in days:
            continue
        days.add(day)
        member_days[day] += 1
        gaps.update(gap_changes(days, [day]))
    assert +gaps == gaps_from_scratch(days_of)
    window = Period(EPOCH + timedelta(days=start), EPOCH + timedelta(days=start + length - 1))
    direct = sum(
        1 for days in days_of.values() if any(window.start <= d <= window.end for d in days)
    )
    assert distinct_from_gaps(gaps, member_days, window) == direct


@settings(max_examples=200, deadline=None)
@given(
    before=st.sets(st.integers(0, 90), max_size=12),
    new=st.sets(st.integers(0, 90), min_size=1, max_size=12),
)
def test_many_new_days_of_one_member_in_one_batch_move_the_counts_as_one_by_one(
    before: set[int], new: set[int]
) -> None:
    old = {EPOCH + timedelta(days=n) for n in before}
    fresh = {EPOCH + timedelta(days=n) for n in new} - old
    gaps = gaps_from_scratch({"m": old})
    gaps.update(gap_changes(old | fresh, fresh))
    assert +gaps == gaps_from_scratch({"m": old | fresh})


@settings(max_examples=300, deadline=None)
@given(old=st.sets(st.integers(0, 3 * MAX_WINDOW_DAYS), max_size=15), new=st.integers(0, 180))
# The neighbours just inside and just outside the longest window of each other.
@example(old={0, MAX_WINDOW_DAYS - 1}, new=10)
@example(old={0, MAX_WINDOW_DAYS}, new=10)
def test_one_new_day_moves_the_counts_as_the_general_rule_does(old: set[int], new: int) -> None:
    """The fast path of PostgreSQL ingest: a member's only new day of a batch, given just
    their nearest old days within the longest window (what its statement reads)."""
    days = {EPOCH + timedelta(days=n) for n in old}
    day = EPOCH + timedelta(days=new)
    days.discard(day)
    near = [d for d in days if abs((d - day).days) < MAX_WINDOW_DAYS]
    before = max((d for d in near if d < day), default=None)
    after = min((d for d in near if d > day), default=None)
    moves: Counter[tuple[date, int]] = Counter()
    for moved, gap, n in one_new_day(day, before, after):
        moves[(moved, gap)] += n
    assert Counter({key: n for key, n in moves.items() if n}) == gap_changes(days | {day}, [day])


def test_gaps_as_long_as_the_longest_window_are_not_kept() -> None:
    first = EPOCH
    assert gap_changes([first, first + timedelta(days=MAX_WINDOW_DAYS)], [first]) == Counter()
    near = first + timedelta(days=MAX_WINDOW_DAYS - 1)
    assert gap_changes([first, near], [near]) == Counter({(near, MAX_WINDOW_DAYS - 1): 1})


def check_in(member: str, day: date, community: str = "c1") -> campaigns.CampaignCheckedIn:
    return campaigns.CampaignCheckedIn(
        campaign_id="camp",
        community_id=community,
        member_id=member,
        day=day,
        streak=1,
        total=1,
        checked_in_at=at(day),
    )


async def figures(analytics: Analytics, start: date, end: date, **params: str) -> dict[str, int]:
    body = await analytics.get("/v1/metrics/overview", **{"from": start, "to": end}, **params)
    return {name: f["value"] for name, f in body["figures"].items()}


async def test_late_out_of_order_and_replayed_days_give_known_dau_wau_mau(
    analytics: Analytics,
) -> None:
    a, b, c = new_id(), new_id(), new_id()
    replayed = check_in(a, D - timedelta(days=3))
    event_id = new_id()
    # Newest first, then late events filling the gaps in between.
    assert await analytics.apply(check_in(a, D), event_id=new_id())
    assert await analytics.apply(check_in(a, D - timedelta(days=20)))
    assert await analytics.apply(replayed, event_id)
    assert not await analytics.apply(replayed, event_id)  # the replay: no second count
    await analytics.apply(check_in(a, D - timedelta(days=3)))  # same day again, new event
    await analytics.apply(check_in(b, D - timedelta(days=6)))
    await analytics.apply(check_in(b, D - timedelta(days=40)))
    # Several days of one member in one batch, older than days already counted.
    await analytics.apply_batch([check_in(c, D - timedelta(days=n)) for n in (2, 30, 8, 2, 27)])

    now = await figures(analytics, D - timedelta(days=29), D)
    assert (now["dau"], now["wau"], now["mau"]) == (1, 3, 3)
    assert now["active_members"] == 3
    # Previous period D-59..D-30: b on D-40, c on D-30.
    body = await analytics.get("/v1/metrics/overview", **{"from": D - timedelta(days=29), "to": D})
    assert body["figures"]["active_members"]["previous"] == 2
    assert body["figures"]["mau"]["previous"] == 2  # D-57..D-30
    week = await figures(analytics, D - timedelta(days=6), D)
    assert week["active_members"] == 3  # a (D, D-3), b (D-6), c (D-2)
    earlier = await figures(analytics, D - timedelta(days=9), D - timedelta(days=7))
    assert (earlier["dau"], earlier["active_members"], earlier["wau"]) == (0, 1, 1)


async def test_counters_agree_with_a_direct_distinct_count_and_with_a_rebuild(
    analytics: Analytics,
) -> None:
    rng = random.Random(11)
    people = [new_id() for _ in range(12)]
    community = "club"
    truth: set[tuple[str, str, date]] = set()  # (scope, member, day) active
    viewed: set[tuple[str, str, date]] = set()
    author = people[0]
    post = await analytics.publish(author, community, at(D - timedelta(days=70)))
    truth |= {("", author, D - timedelta(days=70)), (community, author, D - timedelta(days=70))}
    events = []
    for _ in range(160):
        member, day = rng.choice(people), D - timedelta(days=rng.randrange(70))
        if rng.random() < 0.3:
            events.append(("view", member, day))
            viewed |= {("", member, day), (community, member, day)}
        else:
            events.append(("act", member, day))
            truth |= {("", member, day), (community, member, day)}
    rng.shuffle(events)  # late and out of order
    for at_ in range(0, len(events), 17):
        batch: list[EventData] = []
        for what, member, day in events[at_ : at_ + 17]:
            if what == "view":
                await analytics.view(member, post, at(day))
            else:
                batch.append(check_in(member, day, community))
        await analytics.apply_batch(batch)
    # Erasure keeps every count.
    await analytics.apply(members.MemberErased(member_id=people[3], erased_at=at(D)))

    def direct(rows: set[tuple[str, str, date]], scope: str, window: Period) -> int:
        return len({m for s, m, d in rows if s == scope and window.start <= d <= window.end})

    for scope, params in (("", {}), (community, {"community_id": community})):
        for start, end in (
            (D - timedelta(days=29), D),
            (D - timedelta(days=9), D - timedelta(days=3)),
        ):
            period = Period(start, end)
            got = await figures(analytics, start, end, **params)
            assert got["active_members"] == direct(truth, scope, period)
            assert got["wau"] == direct(truth, scope, period.trailing(7))
            assert got["mau"] == direct(truth, scope, period.trailing(28))
            assert got["reach"] == direct(viewed, scope, period)
        body = await analytics.get(
            "/v1/metrics/overview",
            granularity="week",
            **params,
            **{"from": D - timedelta(days=40), "to": D},
        )
        for point in body["series"]:
            bucket = Period(date.fromisoformat(point["start"]), date.fromisoformat(point["end"]))
            assert point["active_members"] == direct(truth, scope, bucket)

    async def gap_rows() -> list[tuple[str, str, date, int, int]]:
        async with analytics.runtime.db.session() as session:
            rows = await session.execute(
                select(
                    ActivityGap.scope,
                    ActivityGap.kind,
                    ActivityGap.day,
                    ActivityGap.gap,
                    ActivityGap.members,
                ).where(ActivityGap.members != 0)
            )
            return sorted((s, k, d, g, n) for s, k, d, g, n in rows.all())

    kept = await gap_rows()
    assert kept
    async with analytics.runtime.db.session() as session:
        await rebuild(session)
    assert await gap_rows() == kept
