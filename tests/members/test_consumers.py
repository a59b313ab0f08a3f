"""What members learns from other services: tiers, balances, activity stamps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from shared.events.contracts import campaigns, content, rewards
from tests.conftest import deliver, record_of
from tests.members.conftest import OPERATOR, outbox_events, register, runtime_of

NOW = datetime(2026, 11, 22, 20, 30, tzinfo=UTC)


async def profile(members: httpx.AsyncClient, member_id: str) -> dict[str, object]:
    response = await members.get(f"/v1/members/{member_id}", headers=OPERATOR)
    assert response.status_code == 200
    body: dict[str, object] = response.json()
    return body


async def test_tier_changes_show_on_the_profile(members: httpx.AsyncClient) -> None:
    fan = await register(members)
    changed = rewards.TierChanged(
        member_id=fan["id"], tier="core_fan", tier_name="Core Fan", direction="upgrade",
        changed_at=NOW,
    )  # fmt: skip
    await deliver(runtime_of(members), record_of(changed, fan["id"]))
    body = await profile(members, fan["id"])
    assert (body["tier"], body["tier_name"]) == ("core_fan", "Core Fan")


async def test_balance_follows_the_latest_ledger_event(members: httpx.AsyncClient) -> None:
    fan = await register(members)
    earned = rewards.PointsEarned(
        member_id=fan["id"], entry_id="e1", amount=50, reason_code="post", reason="Posted",
        source="evt-1", available_at=NOW, balance=150, earned_at=NOW,
    )  # fmt: skip
    spent = rewards.PointsSpent(
        member_id=fan["id"], entry_id="e2", amount=30, reason_code="redeem", source="k",
        balance=120, spent_at=NOW,
    )  # fmt: skip
    await deliver(runtime_of(members), record_of(earned, fan["id"]), record_of(spent, fan["id"]))
    assert (await profile(members, fan["id"]))["points_balance"] == 120


async def test_activity_stamps_keep_the_latest_time_and_ignore_views(
    members: httpx.AsyncClient,
) -> None:
    fan = await register(members)
    later, earlier = NOW, NOW - timedelta(days=2)
    comment = content.CommentCreated(
        post_id="p", community_id="c", comment_id="k", author_id=fan["id"],
        post_author_id="someone", created_at=later,
    )  # fmt: skip
    checkin = campaigns.CampaignCheckedIn(
        campaign_id="cmp", member_id=fan["id"], day=earlier.date(), streak=1, total=1,
        checked_in_at=earlier,
    )  # fmt: skip
    view = content.PostViewed(
        post_id="p", community_id="c", member_id=fan["id"], post_author_id="x",
        viewed_at=NOW + timedelta(days=1),
    )  # fmt: skip
    await deliver(
        runtime_of(members),
        record_of(comment, fan["id"]),
        record_of(checkin, fan["id"]),
        record_of(view, fan["id"]),
    )
    stamp = (await profile(members, fan["id"]))["last_active_at"]
    assert stamp == later.isoformat().replace("+00:00", "Z")


async def test_a_redelivered_event_activates_a_referral_once(members: httpx.AsyncClient) -> None:
    referrer = await register(members)
    invitee = await register(members, invite_code=referrer["invite_code"])
    published = content.PostPublished(
        post_id="p1", community_id="c", author_id=invitee["id"], author_kind="member",
        post_type="article", published_at=datetime.now(UTC),
    )  # fmt: skip
    record = record_of(published, "p1")
    await deliver(runtime_of(members), record, record, record)
    [activated] = await outbox_events(members, "member.referral_activated")
    assert activated.data["referrer_id"] == referrer["id"]
    assert activated.data["activated_by"] == "post.published"


async def test_staff_posts_do_not_stamp_members(members: httpx.AsyncClient) -> None:
    fan = await register(members)
    published = content.PostPublished(
        post_id="p2", community_id="c", author_id=fan["id"], author_kind="staff",
        post_type="article", published_at=NOW,
    )  # fmt: skip
    await deliver(runtime_of(members), record_of(published, "p2"))
    assert (await profile(members, fan["id"]))["last_active_at"] is None


async def test_a_fetch_of_ledger_and_activity_events_applies_as_one_by_one_would(
    members: httpx.AsyncClient,
) -> None:
    """One fetch, one transaction: the latest balance and stamp per member, one activation."""
    referrer = await register(members)
    invitee = await register(members, invite_code=referrer["invite_code"])
    fan = await register(members)
    earlier, later = NOW - timedelta(hours=3), NOW - timedelta(hours=1)

    def earned(member_id: str, balance: int, n: int) -> rewards.PointsEarned:
        return rewards.PointsEarned(
            member_id=member_id, entry_id=f"e{n}", amount=10, reason_code="like",
            reason="Liked", source=f"evt-{n}", available_at=NOW, balance=balance, earned_at=NOW,
        )  # fmt: skip

    def reacted(member_id: str, at: datetime) -> content.ReactionAdded:
        return content.ReactionAdded(
            post_id="p", community_id="c", member_id=member_id, post_author_id="x",
            kind="like", reacted_at=at,
        )  # fmt: skip

    comment = content.CommentCreated(
        post_id="p", community_id="c", comment_id="k1", author_id=invitee["id"],
        post_author_id="x", created_at=earlier,
    )  # fmt: skip
    records = [
        record_of(earned(fan["id"], 110, 1), fan["id"], offset=0),
        record_of(earned(invitee["id"], 10, 2), invitee["id"], offset=1),
        record_of(earned(fan["id"], 120, 3), fan["id"], offset=2),
        record_of(comment, "p", offset=3),
        record_of(reacted(invitee["id"], later), "p", offset=4),
        record_of(reacted(fan["id"], later), "p", offset=5),
        record_of(reacted(fan["id"], earlier), "p", offset=6),
        record_of(earned(fan["id"], 130, 4), fan["id"], offset=7),
    ]
    await runtime_of(members).consumer.handle_batch(records)

    def iso(at: datetime) -> str:
        return at.isoformat().replace("+00:00", "Z")

    fan_now, invitee_now = await profile(members, fan["id"]), await profile(members, invitee["id"])
    assert (fan_now["points_balance"], fan_now["last_active_at"]) == (130, iso(later))
    assert (invitee_now["points_balance"], invitee_now["last_active_at"]) == (10, iso(later))
    [activated] = await outbox_events(members, "member.referral_activated")
    assert activated.data["member_id"] == invitee["id"]
    assert activated.data["activated_by"] == "comment.created"
