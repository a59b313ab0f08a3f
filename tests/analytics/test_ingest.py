"""Set-based ingest: a fetch applied in one transaction builds exactly what one event at a
time builds, through the real consumer, on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from services.analytics.app import create_app
from services.analytics.periods import MAX_WINDOW_DAYS
from services.analytics.raw import ERASED_LATER
from services.analytics.settings import AnalyticsSettings
from services.analytics.windows import gap_changes
from shared.events.contracts import campaigns, content, members, rewards
from shared.events.registry import EventData
from tests.analytics.conftest import MONDAY, Analytics, at, new_id
from tests.conftest import Databases, record_of, running

D = MONDAY + timedelta(days=40)
EPOCH = date(2026, 1, 1)


def day(n: int) -> date:
    return D - timedelta(days=n)


def a_day_of_everything() -> list[EventData]:
    """Every kind of event, several members acting on several days, late and out of order,
    a leave and rejoin, and an erasure with events about the erased member on both sides."""
    club, erased, staff = "club", new_id(), new_id()
    people = [new_id() for _ in range(4)]
    post, staff_post, share = new_id(), new_id(), new_id()
    events: list[EventData] = [
        members.CommunityCreated(
            community_id=club,
            name="club",
            owner_id=people[0],
            visibility="public",
            timezone="Asia/Shanghai",
            created_at=at(day(90)),
        )
    ]
    for n, person in enumerate([*people, erased]):
        events.append(
            members.MemberRegistered(
                member_id=person, nickname="fan", channel="app", registered_at=at(day(60 - n))
            )
        )
        events.append(
            members.MemberJoinedCommunity(
                community_id=club, member_id=person, role="member", joined_at=at(day(50))
            )
        )
    events += [
        content.PostPublished(
            post_id=post,
            community_id=club,
            author_id=people[0],
            author_kind="member",
            post_type="article",
            published_at=at(day(3), 9),
        ),
        content.PostPublished(
            post_id=staff_post,
            community_id=club,
            author_id=staff,
            author_kind="staff",
            post_type="article",
            published_at=at(day(2), 9),
        ),
    ]

    def view(member: str, n: int, hour: int = 12, via: str | None = None) -> EventData:
        return content.PostViewed(
            post_id=post,
            community_id=club,
            member_id=member,
            post_author_id=people[0],
            via_share_id=via,
            viewed_at=at(day(n), hour),
        )

    def check_in(member: str, n: int, hour: int = 12) -> EventData:
        return campaigns.CampaignCheckedIn(
            campaign_id="camp",
            community_id=club,
            member_id=member,
            day=day(n),
            streak=1,
            total=1,
            checked_in_at=at(day(n), hour),
        )

    events += [
        view(people[1], 0),
        view(people[1], 0, 15),  # the same viewer-day again: first and last move
        view(people[1], 3),
        view(people[2], 700),  # further back than the longest window is long
        content.ReactionAdded(
            post_id=post,
            community_id=club,
            member_id=people[2],
            kind="like",
            post_author_id=people[0],
            reacted_at=at(day(1)),
        ),
        content.CommentCreated(
            post_id=post,
            community_id=club,
            comment_id=new_id(),
            author_id=people[0],  # on their own post: no received score
            post_author_id=people[0],
            created_at=at(day(1), 13),
        ),
        content.PostShared(
            post_id=post,
            community_id=club,
            share_id=share,
            member_id=people[3],
            channel="wechat",
            post_author_id=people[0],
            shared_at=at(day(1), 14),
        ),
        view(people[3], 0, 16, via=share),
        content.PollVoted(
            post_id=staff_post,
            community_id=club,
            member_id=people[2],
            option_ids=["a"],
            voted_at=at(day(2), 20),
        ),
        # Several days of one member, newest first, with gaps the windows ask about.
        *(check_in(people[2], n) for n in (0, 30, 6, 2, 29, 0)),
        check_in(people[1], 20),  # late: long before the days already counted
        check_in(erased, 4),
        members.MemberLeftCommunity(community_id=club, member_id=people[3], left_at=at(day(1))),
        members.MemberJoinedCommunity(
            community_id=club, member_id=people[3], role="member", joined_at=at(day(0))
        ),
        campaigns.CampaignCreated(
            campaign_id="camp",
            community_id=club,
            type="checkin",
            name="21 days",
            objective="engagement",
            starts_at=at(day(30)),
            ends_at=at(day(-7)),
            created_by=people[0],
            created_at=at(day(30)),
        ),
        campaigns.CampaignJoined(
            campaign_id="camp", community_id=club, member_id=people[1], joined_at=at(day(25))
        ),
        campaigns.CampaignCompleted(
            campaign_id="camp", member_id=people[2], completed_at=at(day(0), 22)
        ),
        rewards.PointsEarned(
            member_id=people[0],
            entry_id=new_id(),
            amount=20,
            reason_code="post",
            reason="post",
            source=post,
            available_at=at(day(3)),
            balance=20,
            earned_at=at(day(3), 9),
        ),
        rewards.TierChanged(
            member_id=people[0],
            tier="core_fan",
            tier_name="Core Fan",
            direction="upgrade",
            changed_at=at(day(3), 10),
        ),
        members.MemberErased(member_id=erased, erased_at=at(day(1))),
        # After the erasure in the same fetch: counted, but under no per-member row.
        check_in(erased, 0),
        view(erased, 0),
        check_in(erased, 9),  # late as well
    ]
    return events


@asynccontextmanager
async def consumer_app(databases: Databases) -> AsyncIterator[Analytics]:
    settings = AnalyticsSettings.model_validate(
        {"database_url": await databases.new("analytics"), "log_json": False}
    )
    app = create_app(settings, run_background=False)
    async with running(app) as client:
        yield Analytics(client, app.state.runtime)


def comparable(tables: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[Any]]:
    """The erased member's random surrogate key as one placeholder, and no gap rows at 0
    (one event at a time may leave a +1 and a -1 there; a batch nets them out first)."""

    def plain(value: Any) -> Any:
        if isinstance(value, str) and value.startswith("erased-") and value != ERASED_LATER:
            return "erased-surrogate"
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    tables = tables | {"activity_gaps": [row for row in tables["activity_gaps"] if row[-1]]}
    return {
        name: sorted((tuple(plain(v) for v in row) for row in rows), key=repr)
        for name, rows in tables.items()
    }


async def test_a_fetch_in_one_transaction_builds_what_one_event_at_a_time_builds(
    databases: Databases,
) -> None:
    records = [record_of(data, "s", offset=n) for n, data in enumerate(a_day_of_everything())]
    records.insert(12, records[9])  # a redelivery inside the fetch applies once
    async with consumer_app(databases) as one_at_a_time:
        for record in records:
            await one_at_a_time.runtime.consumer.handle(record)
        expected = await one_at_a_time.tables()
    async with consumer_app(databases) as batched:
        await batched.runtime.consumer.handle_batch(records)
        got = await batched.tables()
        async with batched.runtime.db.session() as session:
            # One transaction: every inbox row carries the one claim time.
            claims = await session.scalar(text("SELECT count(DISTINCT processed_at) FROM inbox"))
            kept = await session.scalar(text("SELECT count(*) FROM raw_events"))
    assert (claims, kept) == (1, len(records) - 1)
    assert comparable(got) == comparable(expected)
    assert all(got[name] for name in ("member_activity_days", "activity_gaps", "post_stats"))


@settings(max_examples=300, deadline=None)
@given(
    old=st.sets(st.integers(0, 3 * MAX_WINDOW_DAYS), max_size=15),
    new=st.sets(st.integers(0, 3 * MAX_WINDOW_DAYS), min_size=1, max_size=8),
)
def test_the_nearest_old_days_around_each_new_day_are_all_the_gap_counts_need(
    old: set[int], new: set[int]
) -> None:
    """What PostgreSQL ingest reads per new member-day (windows.insert_days): the member's
    nearest days already there on each side, within the longest window."""
    before = {EPOCH + timedelta(days=n) for n in old}
    fresh = {EPOCH + timedelta(days=n) for n in new} - before
    known: set[date] = set()
    for d in fresh:
        earlier = [o for o in before if o < d and (d - o).days < MAX_WINDOW_DAYS]
        later = [o for o in before if o > d and (o - d).days < MAX_WINDOW_DAYS]
        known |= {max(earlier)} if earlier else set()
        known |= {min(later)} if later else set()
    assert gap_changes(known | fresh, fresh) == gap_changes(before | fresh, fresh)
