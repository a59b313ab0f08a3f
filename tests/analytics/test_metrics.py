"""Growth, activity, interaction, period-over-period, idempotency and erasure on known scenarios."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import Table, select

from services.analytics.models import Base, ScopeMember, StaffMember
from shared.events.contracts import campaigns, content, members
from shared.events.contracts.members import MemberLeftCommunity
from tests.analytics.conftest import MONDAY, Analytics, at, new_id

D = MONDAY + timedelta(days=27)


async def act(analytics: Analytics, member: str, day: date, community: str = "c1") -> None:
    """Something that makes a member active: a campaign check-in."""
    await analytics.check_in("camp", member, at(day), community)


async def test_growth_counts_new_erased_net_and_total_per_channel(analytics: Analytics) -> None:
    day1, day2 = MONDAY, MONDAY + timedelta(days=1)
    await analytics.register(at(day1 - timedelta(days=10)))
    first = await analytics.register(at(day1), "app")
    await analytics.register(at(day1), "app")
    await analytics.register(at(day1, 23, 59), "wechat")
    await analytics.register(at(day2, 0, 1), "wechat")
    await analytics.erase(first, at(day2))

    body = await analytics.get("/v1/metrics/overview", **{"from": day1, "to": day2})
    figures = {name: f["value"] for name, f in body["figures"].items()}
    assert figures["new_members"] == 4
    assert figures["erased"] == 1
    assert figures["net_members"] == 3
    assert figures["total_members"] == 4  # 5 registered, 1 erased
    assert body["members"] == {"total": 4, "new_in_period": 4, "new_in_previous_period": 0}
    assert body["channels"] == [
        {"channel": "app", "new_members": 2, "previous": 0},
        {"channel": "wechat", "new_members": 2, "previous": 0},
    ]
    assert [p["new_members"] for p in body["series"]] == [3, 1]
    assert [p["net"] for p in body["series"]] == [3, 0]


async def test_community_growth_counts_joins_and_leaves(analytics: Analytics) -> None:
    club = await analytics.community()
    fans = [new_id() for _ in range(3)]
    for fan in fans:
        await analytics.join(club, fan, at(MONDAY))
    await analytics.join(club, fans[0], at(MONDAY, 13))  # a repeated join is not a new member
    await analytics.apply(
        MemberLeftCommunity(community_id=club, member_id=fans[1], left_at=at(MONDAY, 14))
    )
    body = await analytics.get(
        "/v1/metrics/overview", community_id=club, **{"from": MONDAY, "to": MONDAY}
    )
    figures = {name: f["value"] for name, f in body["figures"].items()}
    assert (figures["new_members"], figures["left"], figures["net_members"]) == (3, 1, 2)
    assert figures["total_members"] == 2


async def test_joins_leaves_and_rejoins_in_one_batch_apply_in_order(analytics: Analytics) -> None:
    club = await analytics.community()
    stays, returns, goes = new_id(), new_id(), new_id()

    def join(member: str, hour: int) -> members.MemberJoinedCommunity:
        return members.MemberJoinedCommunity(
            community_id=club, member_id=member, role="member", joined_at=at(MONDAY, hour)
        )

    def leave(member: str, hour: int) -> MemberLeftCommunity:
        return MemberLeftCommunity(community_id=club, member_id=member, left_at=at(MONDAY, hour))

    await analytics.apply(join(returns, 8))  # an earlier batch
    await analytics.apply_batch(
        [
            join(stays, 9),
            leave(returns, 9),
            join(goes, 10),
            join(returns, 11),  # back again: not new, no longer left
            leave(goes, 12),
            join(stays, 13),  # a repeated join
        ]
    )
    body = await analytics.get(
        "/v1/metrics/overview", community_id=club, **{"from": MONDAY, "to": MONDAY}
    )
    figures = {name: f["value"] for name, f in body["figures"].items()}
    assert (figures["new_members"], figures["left"]) == (3, 2)
    async with analytics.runtime.db.session() as session:
        rows = await session.execute(
            select(ScopeMember.member_id, ScopeMember.left_on).where(ScopeMember.scope == club)
        )
        left_on = dict(rows.all())
    assert left_on == {stays: None, returns: None, goes: MONDAY}


async def test_dau_wau_mau_use_1_7_and_28_day_windows_and_views_do_not_count(
    analytics: Analytics,
) -> None:
    a, b, c, e, f, viewer = (new_id() for _ in range(6))
    await act(analytics, a, D)
    await act(analytics, a, D - timedelta(days=1))
    await act(analytics, b, D - timedelta(days=6))  # inside the 7-day window
    await act(analytics, c, D - timedelta(days=7))  # just outside it
    await act(analytics, e, D - timedelta(days=27))  # inside the 28-day window
    await act(analytics, f, D - timedelta(days=28))  # just outside it
    post = await analytics.publish(a, "c1", at(D))
    await analytics.view(viewer, post, at(D))

    body = await analytics.get("/v1/metrics/overview", **{"from": D, "to": D})
    figures = {name: f["value"] for name, f in body["figures"].items()}
    assert (figures["dau"], figures["wau"], figures["mau"]) == (1, 2, 4)
    # avg DAU over the 28 days = 5 member-days / 28; divided by MAU 4.
    assert figures["stickiness"] == round(5 / 28 / 4, 4)

    activity = await analytics.get(
        "/v1/metrics/activity", granularity="day", **{"from": D - timedelta(days=1), "to": D}
    )
    assert [(p["dau"], p["wau"], p["mau"]) for p in activity["days"]] == [(1, 3, 5), (1, 2, 4)]
    assert activity["days"][-1]["stickiness"] == figures["stickiness"]


async def test_every_overview_figure_comes_with_the_previous_period_and_its_change(
    analytics: Analytics,
) -> None:
    author, fan = new_id(), new_id()
    club = "club"
    for offset in (0, 1, 2):  # this week: 3 posts
        await analytics.publish(author, club, at(D - timedelta(days=offset)))
    for offset in (7, 8):  # the week before: 2 posts
        await analytics.publish(author, club, at(D - timedelta(days=offset)))
    post = next(iter(analytics.posts))
    await analytics.react(fan, post, at(D))

    body = await analytics.get(
        "/v1/metrics/overview", community_id=club, **{"from": D - timedelta(days=6), "to": D}
    )
    assert body["previous_from"] == str(D - timedelta(days=13))
    assert body["previous_to"] == str(D - timedelta(days=7))
    assert body["figures"]["posts"] == {"value": 3, "previous": 2, "change_pct": 50.0}
    assert body["figures"]["interactions"] == {"value": 1, "previous": 0, "change_pct": None}
    assert body["figures"]["active_members"] == {"value": 2, "previous": 1, "change_pct": 100.0}


async def test_the_same_event_twice_counts_once(analytics: Analytics) -> None:
    member = new_id()
    event = campaigns.CampaignCheckedIn(
        campaign_id="camp",
        community_id="c1",
        member_id=member,
        day=D,
        streak=1,
        total=1,
        checked_in_at=at(D),
    )
    event_id = new_id()
    assert await analytics.apply(event, event_id) is True
    assert await analytics.apply(event, event_id) is False
    await act(analytics, member, D)  # a second action the same day: one active member-day
    body = await analytics.get("/v1/metrics/overview", **{"from": D, "to": D})
    assert body["figures"]["checkins"]["value"] == 2
    assert body["figures"]["actions"]["value"] == 2
    assert body["figures"]["dau"]["value"] == 1


async def test_post_interactions_reach_and_spread_even_when_events_arrive_early(
    analytics: Analytics,
) -> None:
    author, x, y, z = (new_id() for _ in range(4))
    post, club = new_id(), "club"
    analytics.posts[post] = (author, club)
    await analytics.react(x, post, at(D, 9))  # before the post's own event arrives
    await analytics.apply(
        content.PostPublished(
            post_id=post,
            community_id=club,
            author_id=author,
            author_kind="member",
            post_type="video",
            published_at=at(D, 8),
        )
    )
    share = await analytics.share(x, post, at(D, 10))
    await analytics.view(x, post, at(D, 9))
    await analytics.view(y, post, at(D, 11), via_share=share)
    await analytics.view(x, post, at(D + timedelta(days=1)))
    await analytics.view(z, post, at(D + timedelta(days=1)))
    await analytics.react(y, post, at(D, 12))
    await analytics.comment(z, post, at(D + timedelta(days=1)))

    body = await analytics.get(f"/v1/metrics/content/{post}")
    assert body["author_id"] == author
    assert body["post_type"] == "video"
    assert (body["views"], body["reach"], body["views_via_share"]) == (4, 3, 1)
    assert (body["reactions"], body["comments"], body["shares"]) == (2, 1, 1)
    assert body["interactions"] == 4
    assert body["interaction_rate"] == 1.0

    overview = await analytics.get(
        "/v1/metrics/overview", community_id=club, **{"from": D, "to": D + timedelta(days=1)}
    )
    figures = {name: f["value"] for name, f in overview["figures"].items()}
    assert (figures["views"], figures["reach"], figures["views_via_share"]) == (4, 3, 1)
    assert figures["interaction_rate"] == 1.0
    assert figures["interactions_per_post"] == 4.0


async def test_erasure_unlinks_the_member_and_keeps_the_counts(analytics: Analytics) -> None:
    member, fan = new_id(), new_id()
    await analytics.register(at(D), member=member)
    await act(analytics, member, D)
    post = await analytics.publish(member, "c1", at(D))
    await analytics.react(fan, post, at(D))
    await analytics.view(member, post, at(D))
    await analytics.erase(member, at(D + timedelta(days=1)))
    await analytics.erase(member, at(D + timedelta(days=1)))  # a second erasure event
    await act(analytics, member, D + timedelta(days=2))  # a late event about the erased member

    async with analytics.runtime.db.session() as session:
        for table in Base.metadata.sorted_tables:
            assert isinstance(table, Table)
            for column in ("member_id", "author_id"):
                if column in table.c and table.name != "erased_members":
                    found = await session.scalar(
                        select(table.c[column]).where(table.c[column] == member).limit(1)
                    )
                    assert found is None, f"{table.name}.{column} still names the member"

    body = await analytics.get("/v1/metrics/overview", **{"from": D, "to": D + timedelta(days=2)})
    figures = {name: f["value"] for name, f in body["figures"].items()}
    assert (figures["new_members"], figures["erased"], figures["net_members"]) == (1, 1, 0)
    assert figures["checkins"] == 2
    assert [p["active_members"] for p in body["series"]] == [2, 0, 0]
    top = await analytics.get("/v1/metrics/top-contributors", to=D)
    assert [item["member_id"] for item in top["items"]] == [fan]
    content_metrics = await analytics.get(f"/v1/metrics/content/{post}")
    assert content_metrics["author_id"] is None or content_metrics["author_id"] != member
    assert content_metrics["reach"] == 1


async def test_a_staff_post_after_the_erasure_does_not_bring_the_id_back(
    analytics: Analytics,
) -> None:
    member = new_id()
    await analytics.register(at(D), member=member)
    await analytics.erase(member, at(D + timedelta(days=1)))
    await analytics.publish(member, "c1", at(D + timedelta(days=2)), kind="staff")
    async with analytics.runtime.db.session() as session:
        staff = (await session.scalars(select(StaffMember.member_id))).all()
    assert member not in staff


async def test_answers_say_up_to_which_event_time_they_are_complete(analytics: Analytics) -> None:
    empty = await analytics.get("/v1/metrics/overview")
    assert empty["as_of"] is None
    await act(analytics, new_id(), D)
    await act(analytics, new_id(), D - timedelta(days=3))  # late: as_of does not go back
    body = await analytics.get("/v1/metrics/overview")
    assert body["as_of"].startswith(f"{D}T12:00:00")
    late = await analytics.get("/v1/metrics/overview", **{"from": D - timedelta(days=3), "to": D})
    assert [p["active_members"] for p in late["series"]] == [1, 0, 0, 1]


async def test_a_batch_with_an_erasure_in_the_middle_leaves_no_link_and_right_counts(
    analytics: Analytics,
) -> None:
    member, fan, post = new_id(), new_id(), new_id()
    day = at(D)
    checkin = {"campaign_id": "camp", "community_id": "c1", "day": D, "streak": 1, "total": 1}
    await analytics.apply_batch(
        [
            members.MemberRegistered(
                member_id=member, nickname="fan", channel="app", registered_at=day
            ),
            campaigns.CampaignCheckedIn(**checkin, member_id=member, checked_in_at=day),
            content.PostPublished(
                post_id=post,
                community_id="c1",
                author_id=member,
                author_kind="member",
                post_type="article",
                published_at=day,
            ),
            content.PostViewed(
                post_id=post,
                community_id="c1",
                member_id=fan,
                post_author_id=member,
                viewed_at=day,
            ),
            members.MemberErased(member_id=member, erased_at=day + timedelta(hours=1)),
            campaigns.CampaignCheckedIn(**checkin, member_id=member, checked_in_at=day),
            campaigns.CampaignCheckedIn(**checkin, member_id=fan, checked_in_at=day),
        ]
    )
    async with analytics.runtime.db.session() as session:
        for table in Base.metadata.sorted_tables:
            for column in ("member_id", "author_id"):
                if column in table.c and table.name != "erased_members":
                    found = await session.scalar(
                        select(table.c[column]).where(table.c[column] == member).limit(1)
                    )
                    assert found is None, f"{table.name}.{column} still names the member"
    body = await analytics.get("/v1/metrics/overview", **{"from": D, "to": D})
    figures = {name: f["value"] for name, f in body["figures"].items()}
    assert (figures["new_members"], figures["erased"], figures["total_members"]) == (1, 1, 0)
    assert (figures["checkins"], figures["dau"], figures["posts"], figures["reach"]) == (3, 2, 1, 1)
    metrics = (await analytics.client.get("/metrics")).text
    assert "analytics_rollups_as_of_timestamp_seconds" in metrics
