"""Set-based writes keep every value exactly, whatever form it travels in, on both databases."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.analytics.bulk import ADD, EARLIEST, LATEST, SEP, Columns, insert_missing, upsert
from services.analytics.models import DailyCounter, MemberEventDay, RawEvent
from tests.analytics.conftest import Analytics, new_id

DAY = date(2026, 3, 2)


async def write(analytics: Analytics, work: Callable[[Session], None]) -> None:
    async with analytics.runtime.db.session() as session:
        await session.run_sync(work)


async def rows(analytics: Analytics, *columns: Any) -> list[tuple[Any, ...]]:
    async with analytics.runtime.db.session() as session:
        return sorted(tuple(row) for row in (await session.execute(select(*columns))).all())


def steps(first: list[datetime], last: list[datetime]) -> Columns:
    return {
        "scope": [""] * len(first),
        "event_type": ["post.viewed"] * len(first),
        "day": [DAY] * len(first),
        "member_id": [f"m{n}" for n in range(len(first))],
        "first_at": first,
        "last_at": last,
    }


async def test_text_and_json_holding_the_separator_are_stored_as_sent(
    analytics: Analytics,
) -> None:
    ids = [new_id(), new_id()]
    stored = {
        "event_id": ids,
        "type": ["post.viewed", f"odd{SEP}type"],  # this column goes as an array instead
        "source": ["/s", "/s"],
        "subject": [None, "x"],
        "time": [datetime(2026, 3, 2, 12, 0, 0, 1, tzinfo=UTC)] * 2,
        "data": [{"text": f"a{SEP}b", "n": 1, "note": "评论"}, {"list": [1, None, "二"]}],
        "member_id": ["m1", None],
        "related_id": [None, "m2"],
    }
    now = datetime.now(UTC)
    await write(
        analytics,
        lambda s: insert_missing(s, RawEvent, stored, ["event_id"], {"received_at": now}),
    )
    got = await rows(analytics, *(getattr(RawEvent, name) for name in stored))
    assert got == sorted(zip(*stored.values(), strict=True))


async def test_a_lone_empty_string_is_a_value_not_no_value(analytics: Analytics) -> None:
    counter = {"scope": [""], "day": [DAY], "metric": ["posts"], "dimension": [""], "value": [2]}
    keys = ["scope", "day", "metric", "dimension"]
    for _ in range(3):
        await write(analytics, lambda s: upsert(s, DailyCounter, counter, keys, {"value": ADD}))
    got = await rows(analytics, DailyCounter.scope, DailyCounter.dimension, DailyCounter.value)
    assert got == [("", "", 6)]


async def test_timestamps_keep_every_microsecond(analytics: Analytics) -> None:
    moments = [
        datetime(2026, 3, 2, 12, 0, 0, 123457, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2199, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
    ]
    await write(
        analytics,
        lambda s: upsert(
            s,
            MemberEventDay,
            steps(moments, moments),
            ["scope", "event_type", "day", "member_id"],
            {"first_at": EARLIEST, "last_at": LATEST},
        ),
    )
    got = await rows(analytics, MemberEventDay.member_id, MemberEventDay.first_at)
    assert [at for _, at in got] == moments


async def test_earliest_and_latest_move_only_outward(analytics: Analytics) -> None:
    def at(hour: int) -> datetime:
        return datetime(2026, 3, 2, hour, tzinfo=UTC)

    for first, last in ((10, 12), (11, 11), (9, 11), (11, 13)):
        await write(
            analytics,
            lambda s, first=first, last=last: upsert(
                s,
                MemberEventDay,
                steps([at(first)], [at(last)]),
                ["scope", "event_type", "day", "member_id"],
                {"first_at": EARLIEST, "last_at": LATEST},
            ),
        )
    span = await rows(analytics, MemberEventDay.first_at, MemberEventDay.last_at)
    assert span == [(at(9), at(13))]
