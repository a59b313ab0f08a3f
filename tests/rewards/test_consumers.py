"""Earning from consumed events: rules, caps, overrides, grants, and never paying twice."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from shared.broker import LocalBroker
from shared.bus import new_producer
from shared.consumer import ConsumedEvent, parse_data, parse_envelope, run_handler
from shared.events.contracts.campaigns import (
    CampaignCheckedIn,
    CampaignRewardGranted,
    CampaignRewardRevoked,
)
from shared.events.contracts.content import CommentCreated, QuizAnswered
from shared.events.contracts.members import MemberReferralActivated, MemberRegistered
from shared.events.topics import CONTENT
from tests.conftest import eventually
from tests.rewards.conftest import OPERATOR, Rewards, RewardsFactory, like, record_of

NOW = datetime.now(UTC)


async def test_the_same_event_delivered_five_times_pays_once(rewards: Rewards) -> None:
    await rewards.rule("reaction.added", 5)
    author = str(uuid.uuid4())
    event = like(author)
    event_id = str(uuid.uuid4())
    for _ in range(3):
        await rewards.deliver(event, event_id)
    # Twice more inside one batch, the consumer's fast path.
    await rewards.runtime.consumer.handle_batch(
        [record_of(event, event_id, offset=n) for n in range(2)]
    )
    assert (await rewards.account(author))["available"] == 5
    assert len(await rewards.events("points.earned")) == 1


async def test_even_without_the_inbox_the_ledger_source_pays_once(rewards: Rewards) -> None:
    await rewards.rule("reaction.added", 5)
    author = str(uuid.uuid4())
    record = record_of(like(author))
    handler = rewards.runtime.consumer.subscriptions["reaction.added"]
    envelope = parse_envelope(record)
    event = ConsumedEvent(envelope, parse_data(envelope), record.topic, 0, 0)
    for _ in range(5):
        async with rewards.runtime.db.session() as session:
            await run_handler(session, handler, [event])
    async with rewards.runtime.db.session() as session:  # twice in one bulk run
        await run_handler(session, handler, [event, event])
    assert (await rewards.account(author))["available"] == 5


async def test_one_batch_of_mixed_rules_pays_in_order_with_exact_balances(
    rewards: Rewards,
) -> None:
    """Plain rules pay in bulk, a capped rule reads the account between them, in order."""
    await rewards.rule("reaction.added", 5)
    await rewards.rule("comment.created", 3, daily_cap=6)
    alice, bob = str(uuid.uuid4()), str(uuid.uuid4())
    now = datetime.now(UTC)

    def comment(author: str) -> CommentCreated:
        return CommentCreated(
            post_id=str(uuid.uuid4()),
            community_id="c-1",
            comment_id=str(uuid.uuid4()),
            author_id=author,
            post_author_id=bob,
            created_at=now,
        )

    sequence = [like(alice), like(bob), comment(alice), like(alice), comment(alice)]
    sequence += [comment(alice), like(bob), like(alice)]
    await rewards.runtime.consumer.handle_batch(
        [record_of(data, offset=n) for n, data in enumerate(sequence)]
    )
    # alice: 3 likes x 5 + comments 3 + 3 (the third is over the daily cap of 6).
    assert (await rewards.account(alice))["available"] == 21
    assert (await rewards.account(bob))["available"] == 10
    earned = [e.data for e in await rewards.events("points.earned")]
    assert [(e["member_id"], e["amount"]) for e in earned if e["member_id"] == alice] == [
        (alice, 5),
        (alice, 3),
        (alice, 5),
        (alice, 3),
        (alice, 5),
    ]
    assert [e["balance"] for e in earned if e["member_id"] == alice] == [5, 8, 13, 16, 21]
    assert [e["balance"] for e in earned if e["member_id"] == bob] == [5, 10]
    assert (await rewards.audit())["balanced"] is True


async def test_redelivery_through_the_real_broker_pays_once(
    make_rewards: RewardsFactory, broker: LocalBroker
) -> None:
    rewards = await make_rewards(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        relay_poll_interval_s=0.05,
        consumer_retry_backoff_s=0.01,
        run_background=True,
    )
    await rewards.rule("reaction.added", 5)
    author = str(uuid.uuid4())
    record = record_of(like(author))
    producer = new_producer(rewards.runtime.settings, client_id="test-redelivery")
    await producer.start()
    try:
        for _ in range(5):
            await producer.send_and_wait(CONTENT.name, value=record.value, key=author.encode())
    finally:
        await producer.stop()

    async def five_seen() -> bool:
        return rewards.runtime.consumer.processed >= 5

    await eventually(five_seen)
    assert (await rewards.account(author))["available"] == 5
    assert len(await rewards.events("points.earned")) == 1


async def test_daily_and_weekly_caps_limit_what_a_rule_pays(rewards: Rewards) -> None:
    await rewards.rule("reaction.added", 4, daily_cap=10, weekly_cap=14)
    author = str(uuid.uuid4())
    wednesday = datetime(2026, 11, 18, 12, tzinfo=UTC)
    for _ in range(4):
        await rewards.deliver(like(author).model_copy(update={"reacted_at": wednesday}))
    assert (await rewards.account(author))["available"] == 10
    thursday = wednesday + timedelta(days=1)
    for _ in range(2):
        await rewards.deliver(like(author).model_copy(update={"reacted_at": thursday}))
    assert (await rewards.account(author))["available"] == 14
    next_monday = wednesday + timedelta(days=5)
    await rewards.deliver(like(author).model_copy(update={"reacted_at": next_monday}))
    assert (await rewards.account(author))["available"] == 18


async def test_a_community_rule_overrides_the_global_one(rewards: Rewards) -> None:
    await rewards.rule("reaction.added", 2)
    special = await rewards.rule("reaction.added", 7, community_id="vip")
    author = str(uuid.uuid4())
    await rewards.deliver(like(author, community_id="vip"))
    await rewards.deliver(like(author, community_id="other"))
    assert (await rewards.account(author))["available"] == 9
    entries = (await rewards.client.get(f"/v1/accounts/{author}/entries", headers=OPERATOR)).json()[
        "items"
    ]
    assert special["id"] in {e["rule_id"] for e in entries}


async def test_rules_pay_only_inside_their_dates(rewards: Rewards) -> None:
    await rewards.rule(
        "reaction.added",
        5,
        starts_at=(NOW + timedelta(days=1)).isoformat(),
        ends_at=(NOW + timedelta(days=2)).isoformat(),
    )
    author = str(uuid.uuid4())
    await rewards.deliver(like(author))
    assert (await rewards.account(author))["available"] == 0
    later = like(author).model_copy(update={"reacted_at": NOW + timedelta(days=1, hours=1)})
    await rewards.deliver(later)
    assert (await rewards.account(author))["available"] == 5


async def test_quiz_pays_only_when_all_answers_are_right(rewards: Rewards) -> None:
    await rewards.rule("quiz.answered", 20)
    member = str(uuid.uuid4())
    for all_correct in (False, True):
        await rewards.deliver(
            QuizAnswered(
                post_id="p",
                community_id="c",
                member_id=member,
                score=3 if all_correct else 1,
                max_score=3,
                all_correct=all_correct,
                answered_at=NOW,
            )
        )
    assert (await rewards.account(member))["available"] == 20


async def test_referrals_pay_the_referrer_and_welcome_points_the_newcomer(
    rewards: Rewards,
) -> None:
    await rewards.rule("member.referral_activated", 50)
    await rewards.rule("member.registered", 10)
    referrer, invitee = str(uuid.uuid4()), str(uuid.uuid4())
    await rewards.deliver(
        MemberRegistered(member_id=invitee, nickname="n", channel="app", registered_at=NOW)
    )
    await rewards.deliver(
        MemberReferralActivated(
            member_id=invitee, referrer_id=referrer, activated_by="post.published", activated_at=NOW
        )
    )
    assert (await rewards.account(referrer))["available"] == 50
    assert (await rewards.account(invitee))["available"] == 10


async def test_events_without_a_rule_pay_nothing(rewards: Rewards) -> None:
    member = str(uuid.uuid4())
    await rewards.deliver(
        CampaignCheckedIn(
            campaign_id="c", member_id=member, day=NOW.date(), streak=1, total=1, checked_in_at=NOW
        )
    )
    assert (await rewards.account(member))["available"] == 0


def grant(member: str, grant_id: str, **extra: object) -> CampaignRewardGranted:
    values: dict[str, object] = {
        "grant_id": grant_id,
        "campaign_id": str(uuid.uuid4()),
        "member_id": member,
        "kind": "points",
        "points": 30,
        "reason": "Won the UGC contest",
        "granted_at": NOW,
        **extra,
    }
    return CampaignRewardGranted.model_validate(values)


async def test_a_campaign_grant_pays_once_per_grant_id_even_under_new_event_ids(
    rewards: Rewards,
) -> None:
    member = str(uuid.uuid4())
    grant_id = str(uuid.uuid4())
    for _ in range(3):
        await rewards.deliver(grant(member, grant_id))
    assert (await rewards.account(member))["available"] == 30
    [earned] = await rewards.events("points.earned")
    assert earned.data["source"] == f"grant:{grant_id}"


async def test_campaign_grants_of_coupons_and_items_are_handed_out_once(
    rewards: Rewards,
) -> None:
    member = str(uuid.uuid4())
    template = await rewards.client.post(
        "/v1/coupons",
        json={"name": "10% off", "kind": "percent_off", "value": 10, "total_stock": 5},
        headers=OPERATOR,
    )
    template_id = template.json()["id"]
    item = await rewards.item(500, stock=2)
    coupon_grant = grant(member, "g-coupon", kind="coupon", points=None)
    coupon_grant = coupon_grant.model_copy(update={"coupon_template_id": template_id})
    item_grant = grant(member, "g-item", kind="item", points=None)
    item_grant = item_grant.model_copy(update={"item_id": item["id"]})
    for _ in range(2):
        await rewards.deliver(coupon_grant)
        await rewards.deliver(item_grant)
    assert len(await rewards.events("coupon.issued")) == 1
    [redeemed] = await rewards.events("reward.redeemed")
    assert redeemed.data["points"] == 0
    stock = (await rewards.client.get(f"/v1/catalog/{item['id']}", headers=OPERATOR)).json()
    assert stock["stock"] == 1
    templates = (await rewards.client.get("/v1/coupons", headers=OPERATOR)).json()["items"]
    assert templates[0]["remaining_stock"] == 4
    assert json.loads(json.dumps(await rewards.account(member)))["available"] == 0


def revoke(granted: CampaignRewardGranted) -> CampaignRewardRevoked:
    return CampaignRewardRevoked(
        grant_id=granted.grant_id, campaign_id=granted.campaign_id, member_id=granted.member_id,
        kind=granted.kind, points=granted.points,
        coupon_template_id=granted.coupon_template_id,
        reason="Invitee erased within the hold period", revoked_at=NOW,
    )  # fmt: skip


async def test_a_revoked_grant_is_debited_once_and_never_below_zero(rewards: Rewards) -> None:
    member = str(uuid.uuid4())
    paid = grant(member, "g-claw", points=30)
    await rewards.deliver(paid)
    await rewards.credit(member, 5)
    for _ in range(2):  # two revocations of one grant, as separate events
        await rewards.deliver(revoke(paid))
    assert (await rewards.account(member))["available"] == 5
    debits = [e.data["amount"] for e in await rewards.events("points.adjusted")]
    assert [amount for amount in debits if amount < 0] == [-30]
    spender = str(uuid.uuid4())
    spent_first = grant(spender, "g-spent", points=30)
    await rewards.deliver(spent_first)
    await rewards.redeem(spender, (await rewards.item(20, stock=None))["id"])
    await rewards.deliver(revoke(spent_first))
    assert (await rewards.account(spender))["available"] == 0
    assert (await rewards.audit())["balanced"] is True


async def test_a_revoked_coupon_grant_voids_the_unused_code(rewards: Rewards) -> None:
    member = str(uuid.uuid4())
    template = await rewards.client.post(
        "/v1/coupons",
        json={"name": "5 off", "kind": "amount_off", "value": 5, "total_stock": 3},
        headers=OPERATOR,
    )
    granted = grant(member, "g-cpn", kind="coupon", points=None)
    granted = granted.model_copy(update={"coupon_template_id": template.json()["id"]})
    await rewards.deliver(granted)
    [issued] = await rewards.events("coupon.issued")
    await rewards.deliver(revoke(granted))
    async with rewards.runtime.db.session() as session:
        from services.rewards.models import Coupon

        coupon = await session.get(Coupon, issued.data["coupon_id"])
        assert coupon is not None
        assert coupon.status == "revoked"
