"""Rebuilding the rollups from the raw event store: same answers, erasure, one at a time."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text

from services.analytics import ingest
from services.analytics.app import create_app
from services.analytics.models import Rebuild
from services.analytics.raw import ERASED_LATER
from services.analytics.settings import AnalyticsSettings
from shared.auth import Role
from shared.db import utcnow
from shared.events.contracts import campaigns, content, members, rewards
from tests.analytics.conftest import MONDAY, OPERATOR, Analytics, at, new_id
from tests.conftest import Databases, auth, eventually, record_of, running

D = MONDAY + timedelta(days=14)
PERIOD = {"from": MONDAY, "to": D + timedelta(days=3)}


async def rebuild(analytics: Analytics, **body: Any) -> dict[str, Any]:
    """Start a rebuild through the API and wait until it has finished."""
    started = await analytics.client.post("/v1/metrics/rebuilds", json=body, headers=OPERATOR)
    assert started.status_code == 202, started.text
    assert started.headers["location"] == f"/v1/metrics/rebuilds/{started.json()['id']}"

    async def finished() -> dict[str, Any] | None:
        answer: dict[str, Any] = await analytics.get(started.headers["location"])
        return answer if answer["state"] != "running" else None

    done: dict[str, Any] = await eventually(finished)
    assert done["state"] == "succeeded", done
    assert done["events_done"] == done["events_total"] == started.json()["events_total"]
    return done


async def scenario(analytics: Analytics) -> dict[str, str]:
    """Growth, activity, content, a campaign, late, replayed and batched events, an erasure."""
    club = await analytics.community("Europe/Berlin")
    people = [await analytics.register(at(MONDAY + timedelta(days=n)), "app") for n in range(4)]
    erased = await analytics.register(at(MONDAY), "wechat")
    for person in [*people, erased]:
        await analytics.join(club, person, at(MONDAY + timedelta(days=1)))
    post = await analytics.publish(people[0], club, at(D, 9))
    staff_post = await analytics.publish(new_id(), club, at(D, 10), kind="staff")
    await analytics.comment(people[1], post, at(D, 11))
    await analytics.react(people[2], post, at(D, 12))
    await analytics.react(erased, post, at(D, 12))
    share = await analytics.share(people[1], post, at(D, 13))
    await analytics.view(people[3], post, at(D, 14), via_share=share)
    await analytics.view(people[2], staff_post, at(D + timedelta(days=1), 8))
    replayed = new_id()
    for _ in range(2):  # a redelivered event: one effect, one raw row
        await analytics.apply(
            campaigns.CampaignCheckedIn(
                campaign_id="camp",
                community_id=club,
                member_id=people[3],
                day=D,
                streak=1,
                total=1,
                checked_in_at=at(D, 18),
            ),
            event_id=replayed,
        )
    await analytics.apply(
        campaigns.CampaignCreated(
            campaign_id="camp",
            community_id=club,
            type="checkin",
            name="21 days",
            objective="engagement",
            starts_at=at(MONDAY),
            ends_at=at(D + timedelta(days=7)),
            created_by=new_id(),
            created_at=at(MONDAY),
        )
    )
    await analytics.grant("camp", people[3], at(D + timedelta(days=1)))
    await analytics.redeem("camp", people[3], at(D + timedelta(days=2)))
    await analytics.apply_batch(
        [
            rewards.PointsEarned(
                member_id=people[0],
                entry_id=new_id(),
                amount=20,
                reason_code="post",
                reason="post",
                source=new_id(),
                available_at=at(D),
                balance=20,
                earned_at=at(D, 9),
            ),
            content.PollVoted(
                post_id=post,
                community_id=club,
                member_id=people[2],
                option_ids=["a"],
                voted_at=at(D + timedelta(days=2), 20),
            ),
            members.MemberLeftCommunity(
                community_id=club, member_id=people[1], left_at=at(D + timedelta(days=2))
            ),
        ]
    )
    await analytics.check_in("camp", erased, at(D, 7), club)
    await analytics.erase(erased, at(D + timedelta(days=1)))
    # Late: arrives after the erasure and after later days, about earlier days.
    await analytics.check_in("camp", erased, at(D, 6), club)
    await analytics.comment(people[0], post, at(MONDAY + timedelta(days=3), 10))
    return {"club": club, "post": post, "campaign": "camp"}


async def answers(analytics: Analytics, ids: dict[str, str]) -> dict[str, Any]:
    club = ids["club"]
    found: dict[str, Any] = {}
    for name, path, params in (
        ("overview", "/v1/metrics/overview", PERIOD),
        ("club", "/v1/metrics/overview", {**PERIOD, "community_id": club}),
        ("activity", "/v1/metrics/activity", {**PERIOD, "community_id": club}),
        ("heatmap", "/v1/metrics/activity-heatmap", {**PERIOD, "community_id": club}),
        (
            "funnel",
            "/v1/metrics/funnels",
            {**PERIOD, "steps": "member.registered,post.viewed,reaction.added"},
        ),
        ("kol", "/v1/metrics/top-contributors", {**PERIOD, "community_id": club}),
        ("retention", "/v1/metrics/retention", PERIOD),
        ("campaign", f"/v1/metrics/campaigns/{ids['campaign']}", {}),
        ("content", f"/v1/metrics/content/{ids['post']}", {}),
    ):
        found[name] = await analytics.get(path, **params)
    return found


async def derived(analytics: Analytics) -> dict[str, list[tuple[Any, ...]]]:
    """The derived tables (a rebuild does not rewrite the raw store it reads)."""
    dump = await analytics.tables()
    del dump["raw_events"]
    return dump


async def test_a_rebuild_reproduces_what_live_ingest_built_and_applies_a_new_definition(
    analytics: Analytics, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await scenario(analytics)
    live_answers, live_tables = await answers(analytics, ids), await derived(analytics)
    assert live_answers["overview"]["figures"]["checkins"]["value"] == 3

    # A definition change: comments weigh ten times more in the contributor score.
    monkeypatch.setitem(ingest.INITIATED_WEIGHTS, "comment.created", 20.0)
    await rebuild(analytics, batch_size=7)
    changed = await answers(analytics, ids)
    assert changed["kol"] != live_answers["kol"]
    assert changed["overview"] == live_answers["overview"]  # only the score moved

    monkeypatch.undo()
    done = await rebuild(analytics)
    assert done["events_total"] == 30  # every stored event once, the replayed one included
    assert await answers(analytics, ids) == live_answers
    assert await derived(analytics) == live_tables


async def test_erasure_scrubs_the_raw_store_and_a_rebuild_keeps_the_counts(
    analytics: Analytics,
) -> None:
    member, fan, club = new_id(), new_id(), new_id()
    await analytics.apply(
        members.MemberRegistered(
            member_id=member,
            nickname="Alice Zhang",
            channel="app",
            city="Hangzhou",
            gender="female",
            interests=["coffee"],
            registered_at=at(D),
        )
    )
    await analytics.apply(
        members.MemberRegistered(
            member_id=fan, nickname="fan", channel="app", referrer_id=member, registered_at=at(D)
        )
    )
    await analytics.apply(
        members.MemberReferred(member_id=fan, referrer_id=member, referred_at=at(D))
    )
    await analytics.join(club, member, at(D))
    await analytics.apply(
        content.PostPublished(
            post_id=(post := new_id()),
            community_id=club,
            author_id=member,
            author_kind="member",
            post_type="article",
            title="My address is 12 Long Road",
            published_at=at(D, 9),
        )
    )
    analytics.posts[post] = (member, club)
    await analytics.comment(fan, post, at(D, 10))
    await analytics.erase(member, at(D + timedelta(days=1)))
    await analytics.check_in("camp", member, at(D + timedelta(days=2)), club)  # after erasure
    before = await answers_of(analytics, club)

    async with analytics.runtime.db.session() as session:
        rows = (await session.execute(text("SELECT * FROM raw_events"))).mappings().all()
    assert len(rows) == 8
    for row in rows:
        assert member not in str(dict(row)), row
    by_type = {row["type"]: row for row in rows if row["member_id"] != fan}
    registered = _data(by_type["member.registered"])
    assert registered["nickname"] == ""
    assert registered["city"] is None
    assert registered["interests"] == []
    assert registered["gender"] is None
    assert _data(by_type["post.published"])["title"] is None
    surrogate = _data(by_type["member.erased"])["member_id"]
    assert surrogate.startswith("erased-")
    assert surrogate != ERASED_LATER
    referred = next(row for row in rows if row["type"] == "member.referred")
    assert _data(referred)["referrer_id"] == referred["related_id"] == surrogate
    assert _data(by_type["campaign.checked_in"])["member_id"] == ERASED_LATER

    await rebuild(analytics)
    assert await answers_of(analytics, club) == before
    figures = before[0]["figures"]
    assert (figures["new_members"]["value"], figures["erased"]["value"]) == (2, 1)


async def answers_of(analytics: Analytics, club: str) -> list[Any]:
    return [
        await analytics.get("/v1/metrics/overview", **PERIOD),
        await analytics.get("/v1/metrics/overview", **PERIOD, community_id=club),
        await analytics.get("/v1/metrics/top-contributors", **PERIOD),
    ]


def _data(row: Any) -> dict[str, Any]:
    data = row["data"]
    if isinstance(data, str):  # SQLite hands JSON back as text through a raw SELECT
        data = json.loads(data)
    assert isinstance(data, dict)
    return data


def checkin(hour: int) -> campaigns.CampaignCheckedIn:
    """A first check-in on day ``D`` by a new member."""
    return campaigns.CampaignCheckedIn(
        campaign_id="camp",
        community_id="c1",
        member_id=new_id(),
        day=D,
        streak=1,
        total=1,
        checked_in_at=at(D, hour),
    )


async def many_events(analytics: Analytics, n: int) -> None:
    await analytics.apply_batch([checkin(8) for _ in range(n)])


async def test_a_second_rebuild_while_one_runs_is_a_409(analytics: Analytics) -> None:
    await many_events(analytics, 150)
    first = await analytics.client.post(
        "/v1/metrics/rebuilds", json={"batch_size": 1}, headers=OPERATOR
    )
    assert first.status_code == 202, first.text
    assert first.json()["state"] == "running"
    second = await analytics.client.post("/v1/metrics/rebuilds", headers=OPERATOR)
    assert second.status_code == 409
    assert second.headers["content-type"] == "application/problem+json"
    assert second.json()["type"].endswith("rebuild-running")

    async def finished() -> bool:
        answer = await analytics.get(f"/v1/metrics/rebuilds/{first.json()['id']}")
        return bool(answer["state"] == "succeeded")

    await eventually(finished)
    listed = await analytics.get("/v1/metrics/rebuilds")
    assert [r["id"] for r in listed["items"]] == [first.json()["id"]]
    # Done: the next one may start.
    assert (await rebuild(analytics))["events_total"] == 150


async def test_live_events_wait_for_a_running_rebuild_and_are_applied_once(
    databases: Databases,
) -> None:
    settings = AnalyticsSettings.model_validate(
        {
            "database_url": await databases.new("analytics"),
            "log_json": False,
            "consumer_retry_backoff_s": 0.01,
        }
    )
    app = create_app(settings, run_background=False)
    async with running(app) as client:
        analytics = Analytics(client, app.state.runtime)
        await many_events(analytics, 300)  # batches of one: long enough to act meanwhile
        started = await client.post(
            "/v1/metrics/rebuilds", json={"batch_size": 1}, headers=OPERATOR
        )
        assert started.status_code == 202
        location = started.headers["location"]
        late = [record_of(checkin(9), subject="camp", offset=n) for n in range(3)]
        # The consumer's own batch path: rolled back and retried while the rebuild runs.
        delivery = asyncio.create_task(analytics.runtime.consumer.handle_batch(late))
        progress = await eventually(
            lambda: _progress(analytics, location, lambda r: r["events_done"] >= 10)
        )
        assert progress["state"] == "running"
        assert not delivery.done()
        done = await eventually(
            lambda: _progress(analytics, location, lambda r: r["state"] != "running")
        )
        assert done["state"] == "succeeded"
        assert done["events_done"] == 300
        await asyncio.wait_for(delivery, 30)
        body = await analytics.get("/v1/metrics/overview", **{"from": D, "to": D})
        assert body["figures"]["checkins"]["value"] == 303
        assert body["figures"]["dau"]["value"] == 303
        # And the stored events agree: a rebuild now gives the same.
        await rebuild(analytics)
        again = await analytics.get("/v1/metrics/overview", **{"from": D, "to": D})
        assert again["figures"] == body["figures"]


async def _progress(analytics: Analytics, location: str, ready: Any) -> dict[str, Any] | None:
    answer: dict[str, Any] = await analytics.get(location)
    return answer if ready(answer) else None


async def test_rebuild_refuses_rollups_the_raw_store_cannot_explain_unless_forced(
    analytics: Analytics,
) -> None:
    await many_events(analytics, 5)
    async with analytics.runtime.db.session() as session:  # as if applied before 0005
        await session.execute(text("DELETE FROM raw_events"))
    refused = await analytics.client.post("/v1/metrics/rebuilds", headers=OPERATOR)
    assert refused.status_code == 409
    assert refused.json()["type"].endswith("raw-store-incomplete")
    assert "5 events" in refused.json()["detail"]
    await rebuild(analytics, force=True)
    body = await analytics.get("/v1/metrics/overview", **{"from": D, "to": D})
    assert body["figures"]["checkins"]["value"] == 0


async def test_bad_rebuild_requests_are_problem_details(analytics: Analytics) -> None:
    for body in ({"batch_size": 0}, {"batch_size": "10"}, {"force": "yes"}, {"fast": True}, []):
        response = await analytics.client.post("/v1/metrics/rebuilds", json=body, headers=OPERATOR)
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    missing = await analytics.client.get(f"/v1/metrics/rebuilds/{new_id()}", headers=OPERATOR)
    assert missing.status_code == 404
    assert missing.json()["type"].endswith("rebuild-not-found")
    too_long = await analytics.client.get("/v1/metrics/rebuilds/" + "x" * 37, headers=OPERATOR)
    assert too_long.status_code == 422
    for cursor in ("nonsense", "WyJ4IiwgInkiXQ"):  # the second is ["x", "y"]
        bad = await analytics.client.get(
            "/v1/metrics/rebuilds", params={"cursor": cursor}, headers=OPERATOR
        )
        assert bad.status_code == 422, bad.text
        assert bad.json()["type"].endswith("bad-cursor")


async def test_only_operators_rebuild_or_read_rebuilds(analytics: Analytics) -> None:
    everyone_else = (
        {},
        auth(Role.MEMBER),
        auth(Role.MODERATOR, communities=frozenset({"c1"})),
        auth(Role.PARTNER, scopes=frozenset({"metrics:*"})),
    )
    for headers in everyone_else:
        post = await analytics.client.post("/v1/metrics/rebuilds", headers=headers)
        listed = await analytics.client.get("/v1/metrics/rebuilds", headers=headers)
        assert post.status_code == listed.status_code == (401 if not headers else 403)
    async with analytics.runtime.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(Rebuild)) == 0


async def test_a_rebuild_left_running_by_a_dead_process_reads_as_failed(
    analytics: Analytics,
) -> None:
    async with analytics.runtime.db.session() as session:
        session.add(
            Rebuild(
                id=(stale := new_id()),
                state="running",
                requested_by="someone",
                batch_size=500,
                events_total=10,
                events_done=3,
                started_at=utcnow(),
            )
        )
    answer = await analytics.get(f"/v1/metrics/rebuilds/{stale}")
    assert answer["state"] == "failed"
    assert "interrupted" in answer["error"]
    # And it does not block the next one.
    await rebuild(analytics)


async def test_replayed_events_are_stored_once_and_pages_of_rebuilds_follow_the_cursor(
    analytics: Analytics,
) -> None:
    event_id = new_id()
    data = members.MemberErased(member_id=new_id(), erased_at=at(D))
    assert await analytics.apply(data, event_id=event_id)
    assert not await analytics.apply(data, event_id=event_id)
    async with analytics.runtime.db.session() as session:
        assert await session.scalar(text("SELECT count(*) FROM raw_events")) == 1
    ids = [(await rebuild(analytics))["id"] for _ in range(3)]
    first = await analytics.get("/v1/metrics/rebuilds", limit=2)
    rest = await analytics.get("/v1/metrics/rebuilds", limit=2, cursor=first["next_cursor"])
    assert [r["id"] for r in first["items"] + rest["items"]] == ids[::-1]
    assert rest["next_cursor"] is None
