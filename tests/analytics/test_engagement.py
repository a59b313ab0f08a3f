"""Lifecycle, funnels, retention, contributor scores and the heatmap on hand-built scenarios."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from services.analytics.periods import Granularity, Period, bucket_start, buckets
from shared.events.contracts import campaigns, members
from tests.analytics.conftest import MONDAY, OPERATOR, Analytics, at, new_id

W1, W2 = MONDAY + timedelta(days=7), MONDAY + timedelta(days=14)


async def act(analytics: Analytics, member: str, day: date, community: str = "c1") -> None:
    await analytics.check_in("camp", member, at(day), community)


async def test_lifecycle_sorts_members_into_new_returning_resurrecting_and_dormant(
    analytics: Analytics,
) -> None:
    returning, dormant, new, resurrecting = (new_id() for _ in range(4))
    for member in (returning, dormant, resurrecting):
        await analytics.register(at(MONDAY), member=member)
    await analytics.register(at(W2), member=new)
    await act(analytics, resurrecting, MONDAY)
    for member in (returning, dormant):
        await act(analytics, member, W1 + timedelta(days=2))
    for member in (returning, new, resurrecting):
        await act(analytics, member, W2 + timedelta(days=3))

    body = await analytics.get(
        "/v1/metrics/activity", granularity="week", **{"from": W2, "to": W2 + timedelta(days=6)}
    )
    assert body["lifecycle"] == [
        {
            "start": str(W2),
            "end": str(W2 + timedelta(days=6)),
            "new": 1,
            "returning": 1,
            "resurrecting": 1,
            "dormant": 1,
        }
    ]


async def test_funnel_steps_count_in_order_within_the_window_from_the_first_step(
    analytics: Analytics,
) -> None:
    author = new_id()
    post = await analytics.publish(author, "c1", at(MONDAY - timedelta(days=5)))
    in_order, wrong_order, too_late, before_period, same_day = (new_id() for _ in range(5))
    # Registered, reacted, commented, in order and in time: all three steps.
    await analytics.register(at(MONDAY, 10), member=in_order)
    await analytics.react(in_order, post, at(MONDAY + timedelta(days=1)))
    await analytics.comment(in_order, post, at(MONDAY + timedelta(days=2)))
    # Commented before reacting: stops at the second step.
    await analytics.register(at(MONDAY), member=wrong_order)
    await analytics.comment(wrong_order, post, at(MONDAY + timedelta(days=1)))
    await analytics.react(wrong_order, post, at(MONDAY + timedelta(days=2)))
    # Reacted 8 days after registering: outside the 7-day window.
    await analytics.register(at(MONDAY + timedelta(days=1)), member=too_late)
    await analytics.react(too_late, post, at(MONDAY + timedelta(days=9)))
    # First step before the period: not in the funnel at all.
    await analytics.register(at(MONDAY - timedelta(days=3)), member=before_period)
    await analytics.react(before_period, post, at(MONDAY + timedelta(days=1)))
    # Reacted before and after registering on the same day; commented at the window's end.
    await analytics.register(at(MONDAY, 12), member=same_day)
    await analytics.react(same_day, post, at(MONDAY, 11))
    await analytics.react(same_day, post, at(MONDAY, 15))
    await analytics.comment(same_day, post, at(MONDAY + timedelta(days=7), 12))

    body = await analytics.get(
        "/v1/metrics/funnels",
        steps="member.registered,reaction.added,comment.created",
        window_days=7,
        **{"from": MONDAY, "to": MONDAY + timedelta(days=6)},
    )
    steps = [(s["name"], s["members"]) for s in body["steps"]]
    assert steps == [("member.registered", 4), ("reaction.added", 3), ("comment.created", 2)]
    assert [s["conversion_from_previous"] for s in body["steps"]] == [None, 0.75, 0.6667]
    assert [s["conversion_from_first"] for s in body["steps"]] == [1.0, 0.75, 0.5]


async def test_a_funnel_needs_two_known_steps(analytics: Analytics) -> None:
    for steps in ("member.registered", "member.registered,page.flipped"):
        response = await analytics.client.get(
            "/v1/metrics/funnels", params={"steps": steps}, headers=OPERATOR
        )
        assert response.status_code == 422, response.text
        assert response.json()["type"].endswith("invalid-funnel")


async def test_campaign_funnel_without_its_creation_event_leaves_reached_empty(
    analytics: Analytics,
) -> None:
    campaign, members = new_id(), [new_id() for _ in range(3)]
    for member in members:
        await analytics.check_in(campaign, member, at(MONDAY), "c1")
        await analytics.check_in(campaign, member, at(MONDAY + timedelta(days=1)), "c1")
    for member in members[:2]:
        await analytics.grant(campaign, member, at(MONDAY + timedelta(days=2)))
    await analytics.redeem(campaign, members[0], at(MONDAY + timedelta(days=3)))
    await analytics.check_in(new_id(), members[0], at(MONDAY), "c1")  # another campaign

    body = await analytics.get(f"/v1/metrics/campaigns/{campaign}")
    steps = [(s["name"], s["members"], s["conversion_from_previous"]) for s in body["steps"]]
    assert steps == [
        ("reached", None, None),
        ("joined", 3, None),
        ("active", 3, 1.0),
        ("completed", 0, 0.0),
        ("rewarded", 2, None),
        ("redeemed", 1, 0.5),
    ]
    same = await analytics.get("/v1/metrics/funnels", campaign_id=campaign)
    assert same["steps"] == body["steps"]


async def test_retention_shares_members_active_in_each_week_after_their_join_week(
    analytics: Analytics,
) -> None:
    first = [new_id() for _ in range(4)]
    for n, member in enumerate(first):
        await analytics.register(at(MONDAY + timedelta(days=n)), member=member)
    second = [new_id() for _ in range(2)]
    for member in second:
        await analytics.register(at(W1 + timedelta(days=6), 23), member=member)
    await act(analytics, first[2], MONDAY + timedelta(days=3))  # join week: not counted
    await act(analytics, first[0], W1)
    await act(analytics, first[1], W1 + timedelta(days=6))
    await act(analytics, first[0], W2 + timedelta(days=1))
    await act(analytics, second[0], W2 + timedelta(days=4))

    body = await analytics.get(
        "/v1/metrics/retention", weeks=2, **{"from": MONDAY, "to": W1 + timedelta(days=1)}
    )
    cohorts = [(c["week_start"], c["size"], c["active"], c["retained"]) for c in body["cohorts"]]
    assert cohorts == [
        (str(MONDAY), 4, [2, 1], [0.5, 0.25]),
        (str(W1), 2, [1, 0], [0.5, 0.0]),
    ]


async def test_contributor_scores_decay_rank_band_and_exclude_staff(analytics: Analytics) -> None:
    today, before = W2 + timedelta(days=6), W2 - timedelta(days=1)
    alice, bob, carol, staff, leader, fading = (new_id() for _ in range(6))
    post = await analytics.publish(alice, "c1", at(today))  # 5
    await analytics.comment(carol, post, at(today))  # carol 2, alice +1
    await analytics.comment(carol, post, at(today))  # carol 2, alice +1
    await analytics.comment(alice, post, at(today))  # alice +2, nothing received from herself
    await analytics.publish(bob, "c1", at(today - timedelta(days=7)))  # 5, one half-life ago
    for _ in range(20):
        await analytics.publish(staff, "c1", at(today), kind="staff")
    for _ in range(11):
        await analytics.publish(leader, "c1", at(today))  # 55
    for _ in range(3):
        await analytics.publish(fading, "c1", at(before))  # 15 then, 7.5 a half-life later

    body = await analytics.get(
        "/v1/metrics/top-contributors",
        half_life_days=7,
        **{"from": W2, "to": today},
    )
    ranking = [(i["member_id"], i["score"], i["band"], i["previous_band"]) for i in body["items"]]
    assert ranking == [
        (leader, 55.0, "leader", "observer"),
        (alice, 9.0, "participant", "observer"),
        (fading, 7.5, "participant", "contributor"),
        (carol, 4.0, "participant", "observer"),
        (bob, 2.5, "participant", "participant"),
    ]
    alice_row = next(i for i in body["items"] if i["member_id"] == alice)
    assert (alice_row["initiated"], alice_row["received"]) == (7.0, 2.0)
    assert (alice_row["posts"], alice_row["interactions_received"]) == (1, 3)
    assert body["bands"] == {"observer": 0, "participant": 4, "contributor": 0, "leader": 1}
    moves = {(m["from_band"], m["to_band"]): m["members"] for m in body["movement"]}
    assert moves == {
        ("observer", "participant"): 2,
        ("observer", "leader"): 1,
        ("participant", "participant"): 1,
        ("contributor", "participant"): 1,
    }


async def test_heatmap_shifts_hours_into_the_community_time_zone(analytics: Analytics) -> None:
    shanghai = await analytics.community("Asia/Shanghai")
    new_york = await analytics.community("America/New_York")
    member = new_id()
    await analytics.check_in("camp", member, at(MONDAY, 13), shanghai)  # Mon 21:00 local
    await analytics.check_in("camp", member, at(MONDAY, 14), shanghai)  # Mon 22:00 local
    await analytics.check_in("camp", new_id(), at(MONDAY, 13, 30), shanghai)  # Mon 21:00
    await analytics.check_in("camp", member, at(MONDAY, 17), shanghai)  # Tue 01:00 local
    await analytics.check_in("camp", member, at(MONDAY, 3), new_york)  # Sun 22:00 (EST)

    body = await analytics.get(
        "/v1/metrics/activity-heatmap", community_id=shanghai, **{"from": MONDAY, "to": MONDAY}
    )
    assert body["timezone"] == "Asia/Shanghai"
    nonzero = {(d, h): v for d, row in enumerate(body["cells"]) for h, v in enumerate(row) if v}
    assert nonzero == {(0, 21): 2, (0, 22): 1}  # Tuesday 01:00 local is outside the period
    assert body["peak"] == {"weekday": 0, "hour": 21, "actions": 2}

    ny = await analytics.get(
        "/v1/metrics/activity-heatmap",
        community_id=new_york,
        **{"from": MONDAY - timedelta(days=1), "to": MONDAY},
    )
    assert ny["timezone"] == "America/New_York"
    assert ny["cells"][6][22] == 1


async def test_the_default_heatmap_period_ends_on_the_communitys_own_today(
    analytics: Analytics,
) -> None:
    # UTC+14: from 10:00 UTC on, the local date is already tomorrow (UTC's date + 1).
    kiritimati = await analytics.community("Pacific/Kiritimati")
    now = datetime.now(UTC)
    await analytics.check_in("camp", new_id(), now, kiritimati)
    body = await analytics.get("/v1/metrics/activity-heatmap", community_id=kiritimati)
    local = now.astimezone(ZoneInfo("Pacific/Kiritimati"))
    assert body["cells"][local.weekday()][local.hour] == 1
    assert body["period_to"] == str(local.date())


async def test_best_posting_hours_rank_local_hours_by_interactions_per_post(
    analytics: Analytics,
) -> None:
    club = await analytics.community("Asia/Shanghai")
    author, fan = new_id(), new_id()
    evening = await analytics.publish(author, club, at(MONDAY, 12, 30))  # 20:30 local
    await analytics.publish(author, club, at(MONDAY, 2))  # 10:00 local
    await analytics.react(fan, evening, at(MONDAY, 13))
    await analytics.comment(fan, evening, at(MONDAY, 13))

    body = await analytics.get(
        "/v1/metrics/activity-heatmap", community_id=club, **{"from": MONDAY, "to": MONDAY}
    )
    hours = [
        (h["hour"], h["posts"], h["interactions_per_post"]) for h in body["best_posting_hours"]
    ]
    assert hours == [(20, 1, 2.0), (10, 1, 0.0)]


async def test_funnels_run_over_any_consumed_event_types(analytics: Analytics) -> None:
    campaign, members = new_id(), [new_id() for _ in range(3)]
    for member in members:
        await analytics.check_in(campaign, member, at(MONDAY), "c1")
    for member in members[:2]:
        await analytics.grant(campaign, member, at(MONDAY, 13))
    await analytics.redeem(campaign, members[0], at(MONDAY + timedelta(days=1)))
    await analytics.redeem(campaign, members[1], at(MONDAY + timedelta(days=30)))  # too late

    body = await analytics.get(
        "/v1/metrics/funnels",
        steps="campaign.checked_in,campaign.reward_granted,coupon.redeemed",
        window_days=7,
        **{"from": MONDAY, "to": MONDAY},
    )
    assert [s["members"] for s in body["steps"]] == [3, 2, 1]


async def test_campaign_funnel_reaches_its_community_and_completes_from_completed_events(
    analytics: Analytics,
) -> None:
    community, campaign = await analytics.community(), new_id()
    start, end = MONDAY, MONDAY + timedelta(days=20)
    m1, m2, m3, m4, gone, late, outsider = (new_id() for _ in range(7))
    for member in (m1, m2, m3, m4, gone):
        await analytics.join(community, member, at(MONDAY - timedelta(days=10)))
    await analytics.apply(
        members.MemberLeftCommunity(
            community_id=community, member_id=gone, left_at=at(MONDAY - timedelta(days=5))
        )
    )
    await analytics.join(community, late, at(end + timedelta(days=1)))  # after it ended
    await analytics.apply(
        campaigns.CampaignCreated(
            campaign_id=campaign,
            community_id=community,
            type="checkin",
            name="challenge",
            objective="engagement",
            starts_at=at(start),
            ends_at=at(end),
            created_by="ops",
            created_at=at(MONDAY - timedelta(days=1)),
        )
    )
    for member in (m1, m2, m3):
        await analytics.apply(
            campaigns.CampaignJoined(
                campaign_id=campaign, community_id=community, member_id=member, joined_at=at(start)
            )
        )
    await analytics.check_in(campaign, m1, at(start + timedelta(days=1)), community)
    await analytics.check_in(campaign, outsider, at(start + timedelta(days=1)), community)
    await analytics.apply(
        campaigns.CampaignVoted(
            campaign_id=campaign,
            entry_id=new_id(),
            voter_id=m2,
            entry_author_id=m1,
            voted_at=at(start + timedelta(days=2)),
        )
    )
    completed = campaigns.CampaignCompleted(
        campaign_id=campaign, member_id=m1, completed_at=at(end)
    )
    assert await analytics.apply(completed, event_id="done-1")
    assert not await analytics.apply(completed, event_id="done-1"), "a replay is not applied"
    await analytics.apply(
        campaigns.CampaignCompleted(campaign_id=campaign, member_id=outsider, completed_at=at(end))
    )
    await analytics.grant(campaign, m1, at(end))
    await analytics.redeem(campaign, m1, at(end + timedelta(days=1)))

    body = await analytics.get(f"/v1/metrics/campaigns/{campaign}")
    steps = [(s["name"], s["members"], s["conversion_from_previous"]) for s in body["steps"]]
    # reached: m1..m4 (gone left before the start, late joined after the end) + the outsider
    # who took part; joined: m1, m2, m3, outsider; active: m1, outsider (check-in), m2 (vote).
    assert steps == [
        ("reached", 5, None),
        ("joined", 4, 0.8),
        ("active", 3, 0.75),
        ("completed", 2, 0.6667),
        ("rewarded", 1, 0.5),
        ("redeemed", 1, 1.0),
    ]


async def test_activity_from_the_rollups_matches_a_direct_count_of_members(
    analytics: Analytics,
) -> None:
    """DAU/WAU/MAU per day and the lifecycle, late and batched events, against sets."""
    rng = random.Random(3)
    end = W2 + timedelta(days=40)
    people = [new_id() for _ in range(12)]
    joined = {person: end - timedelta(days=rng.randrange(80)) for person in people}
    for person, day in joined.items():
        await analytics.register(at(day), member=person)
    active = {(rng.choice(people), end - timedelta(days=rng.randrange(90))) for _ in range(150)}
    ordered = list(active)
    rng.shuffle(ordered)  # late and out of order
    await analytics.apply_batch([check_in(m, d) for m, d in ordered[:60]])
    for member, day in ordered[60:]:
        await act(analytics, member, day)

    def who(start: date, stop: date) -> set[str]:
        return {m for m, d in active if start <= d <= stop}

    period = Period(end - timedelta(days=44), end)
    for granularity in Granularity:
        body = await analytics.get(
            "/v1/metrics/activity",
            granularity=granularity.value,
            **{"from": period.start, "to": period.end},
        )
        expected_days = []
        for k in range(period.days):
            day = period.start + timedelta(days=k)
            mau = len(who(day - timedelta(days=27), day))
            member_days = sum(
                len(who(day - timedelta(days=n), day - timedelta(days=n))) for n in range(28)
            )
            expected_days.append(
                {
                    "day": str(day),
                    "dau": len(who(day, day)),
                    "wau": len(who(day - timedelta(days=6), day)),
                    "mau": mau,
                    "stickiness": round(member_days / 28 / mau, 4) if mau else None,
                }
            )
        assert body["days"] == expected_days
        expected_lifecycle = []
        for bucket in buckets(period, granularity):
            before_start = bucket_start(bucket.start - timedelta(days=1), granularity)
            now = who(bucket.start, bucket.end)
            before = who(before_start, bucket.start - timedelta(days=1))
            new = {m for m in now if bucket.start <= joined[m] <= bucket.end}
            expected_lifecycle.append(
                {
                    "start": str(bucket.start),
                    "end": str(bucket.end),
                    "new": len(new),
                    "returning": len((now - new) & before),
                    "resurrecting": len(now - new - before),
                    "dormant": len(before - now),
                }
            )
        assert body["lifecycle"] == expected_lifecycle
    assert any(point["new"] for point in expected_lifecycle)
    assert any(point["resurrecting"] and point["dormant"] for point in expected_lifecycle)


def check_in(member: str, day: date) -> campaigns.CampaignCheckedIn:
    return campaigns.CampaignCheckedIn(
        campaign_id="camp",
        community_id="c1",
        member_id=member,
        day=day,
        streak=1,
        total=1,
        checked_in_at=at(day),
    )
