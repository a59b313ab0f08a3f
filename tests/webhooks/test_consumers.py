"""Events become deliveries: matching, community filter, idempotence, erasure, the real broker."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from services.webhooks.app import create_app
from services.webhooks.consumers import SUBSCRIPTIONS
from services.webhooks.jobs import retention_job
from services.webhooks.models import WebhookDelivery
from services.webhooks.settings import WebhooksSettings
from shared.auth import Role
from shared.broker import LocalBroker
from shared.db import utcnow
from shared.events import REGISTRY
from shared.events.contracts.members import MemberRegistered
from shared.outbox import add_event
from shared.scheduler import run_once
from tests.conftest import Databases, auth, eventually, running, settings_for
from tests.webhooks.conftest import OPERATOR, Receiver, Webhooks, verify_standard_webhook

PUBLIC = "https://93.184.215.14/hooks"


async def payloads(webhooks: Webhooks) -> dict[str, str | None]:
    async with webhooks.runtime.db.session() as session:
        rows = await session.execute(select(WebhookDelivery.event_type, WebhookDelivery.payload))
        return {f"{t}#{i}": p for i, (t, p) in enumerate(rows)}


def test_the_service_subscribes_to_every_registered_event_type() -> None:
    assert set(SUBSCRIPTIONS) == set(REGISTRY)


async def test_an_event_is_recorded_for_each_matching_endpoint_only(webhooks: Webhooks) -> None:
    members = await webhooks.endpoint(PUBLIC, ["member.*"])
    everything = await webhooks.endpoint(PUBLIC, ["*"])
    await webhooks.endpoint(PUBLIC, ["post.published"])
    off = await webhooks.endpoint(PUBLIC, ["*"], enabled=False)
    await webhooks.publish("member.registered", {"member_id": "m1"})
    ids = {d["endpoint_id"] for d in await webhooks.deliveries()}
    assert ids == {members["id"], everything["id"]}
    assert off["id"] not in ids


async def test_a_community_filter_keeps_only_that_communitys_events(
    webhooks: Webhooks,
) -> None:
    coffee = await webhooks.endpoint(PUBLIC, ["member.*"], community_id="coffee")
    await webhooks.publish("member.joined_community", {"member_id": "m", "community_id": "tea"})
    await webhooks.publish("member.registered", {"member_id": "m"})  # platform-wide
    assert await webhooks.deliveries() == []
    await webhooks.publish("member.joined_community", {"member_id": "m", "community_id": "coffee"})
    assert [d["endpoint_id"] for d in await webhooks.deliveries()] == [coffee["id"]]


async def test_the_same_event_twice_is_recorded_once(webhooks: Webhooks) -> None:
    await webhooks.endpoint(PUBLIC)
    event = await webhooks.publish("member.registered", {"member_id": "m1"})
    from services.webhooks.service import webhook_service

    async with webhooks.runtime.db.session() as session:
        await webhook_service.record_event(session, event)
    assert len(await webhooks.deliveries()) == 1


async def test_erasure_drops_stored_bodies_about_the_member_but_delivers_the_erasure(
    webhooks: Webhooks,
) -> None:
    await webhooks.endpoint(PUBLIC)
    erased, kept = "0b7c4a0e-0000-4000-8000-000000000001", "0b7c4a0e-0000-4000-8000-000000000002"
    await webhooks.publish("member.registered", {"member_id": erased, "nickname": "Ann"})
    await webhooks.publish("member.referred", {"member_id": kept, "referrer_id": erased})
    await webhooks.publish("member.registered", {"member_id": kept, "nickname": "Bo"})
    await webhooks.publish("member.erased", {"member_id": erased, "erased_at": "2026-01-01"})
    rows = {d["event_type"] + ":" + d["status"]: d for d in await webhooks.deliveries()}
    assert rows["member.erased:pending"]["payload_purged"] is False
    assert rows["member.referred:dropped"]["payload_purged"] is True
    assert rows["member.registered:dropped"]["payload_purged"] is True
    assert rows["member.registered:pending"]["payload_purged"] is False
    stored = await payloads(webhooks)
    assert not any(erased in (p or "") for k, p in stored.items() if "erased" not in k)
    assert "Ann" not in str(stored)
    dropped = rows["member.registered:dropped"]["id"]
    replay = await webhooks.client.post(
        f"/v1/webhooks/deliveries/{dropped}/replay", headers=OPERATOR
    )
    assert replay.status_code == 409


async def test_a_partner_hears_only_about_its_own_endpoints_being_disabled(
    webhooks: Webhooks,
) -> None:
    crm = auth(Role.PARTNER, subject="apikey:crm", scopes=frozenset({"webhooks:write", "*"}))
    shop = auth(Role.PARTNER, subject="apikey:shop", scopes=frozenset({"webhooks:write", "*"}))
    crm_hook = await webhooks.endpoint(PUBLIC, ["webhook.*"], headers=crm)
    shop_hook = await webhooks.endpoint(PUBLIC, ["webhook.*"], headers=shop)
    ops_hook = await webhooks.endpoint(PUBLIC, ["webhook.*"])
    await webhooks.publish(
        "webhook.endpoint_disabled",
        {"endpoint_id": crm_hook["id"], "url": PUBLIC, "reason": "410", "disabled_at": "2026"},
    )
    ids = {d["endpoint_id"] for d in await webhooks.deliveries()}
    assert ids == {crm_hook["id"], ops_hook["id"]}
    assert shop_hook["id"] not in ids


async def test_the_retention_job_purges_the_old_log(webhooks: Webhooks) -> None:
    await webhooks.endpoint(PUBLIC)
    await webhooks.publish("member.registered", {"member_id": "old"})
    await webhooks.publish("member.registered", {"member_id": "new"})
    async with webhooks.runtime.db.session() as session:
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.payload.contains("old"))
            .values(status="succeeded", created_at=utcnow() - timedelta(days=31))
        )
    job = retention_job(webhooks.dispatcher.settings)
    assert await run_once(webhooks.runtime.db, job) == 1
    assert len(await webhooks.deliveries()) == 1


async def test_an_event_from_the_bus_reaches_a_partner_signed(
    databases: Databases, broker: LocalBroker, receiver: Receiver
) -> None:
    settings = settings_for(
        WebhooksSettings,
        broker,
        await databases.new("webhooks"),
        allow_private_targets=True,
        dispatch_poll_interval_s=0.05,
    )
    app = create_app(settings)
    async with running(app) as client:
        response = await client.post(
            "/v1/webhooks/endpoints",
            json={"url": receiver.url("/bus"), "event_types": ["member.registered"]},
            headers=OPERATOR,
        )
        secret = response.json()["secret"]
        async with app.state.runtime.db.session() as session:
            data = MemberRegistered(
                member_id="m-bus", nickname="Ann", channel="web", registered_at=utcnow()
            )
            event = await add_event(session, data, subject="m-bus", source="/services/members")
        await eventually(lambda: receiver.at("/bus"), timeout_s=30)
    [got] = receiver.at("/bus")
    assert got.headers["webhook-id"] == event.id
    assert verify_standard_webhook(secret, got)


async def test_a_run_of_events_is_recorded_in_order_with_an_erasure_inside_it(
    webhooks: Webhooks,
) -> None:
    await webhooks.endpoint(PUBLIC)
    erased, kept = "0b7c4a0e-0000-4000-8000-000000000003", "0b7c4a0e-0000-4000-8000-000000000004"
    await webhooks.publish_run(
        [
            ("member.registered", {"member_id": erased, "nickname": "Ann"}, erased),
            ("member.erased", {"member_id": erased, "erased_at": "2026-01-01"}, erased),
            ("member.registered", {"member_id": kept, "nickname": "Bo"}, kept),
        ]
    )
    rows = {d["event_type"] + ":" + d["status"]: d for d in await webhooks.deliveries()}
    assert set(rows) == {
        "member.registered:dropped",
        "member.erased:pending",
        "member.registered:pending",
    }
    assert rows["member.registered:dropped"]["payload_purged"] is True
    assert rows["member.registered:pending"]["payload_purged"] is False
    assert "Ann" not in str(await payloads(webhooks))


async def test_a_burst_from_the_bus_reaches_the_partner_in_order_without_polling(
    databases: Databases, broker: LocalBroker, receiver: Receiver
) -> None:
    settings = settings_for(
        WebhooksSettings,
        broker,
        await databases.new("webhooks"),
        allow_private_targets=True,
        dispatch_poll_interval_s=3600.0,  # only commits wake the dispatcher
    )
    app = create_app(settings)
    async with running(app) as client:
        response = await client.post(
            "/v1/webhooks/endpoints",
            json={"url": receiver.url("/burst"), "event_types": ["member.registered"]},
            headers=OPERATOR,
        )
        assert response.status_code == 201, response.text
        async with app.state.runtime.db.session() as session:
            sent = [
                await add_event(
                    session,
                    MemberRegistered(
                        member_id="m-burst",
                        nickname=f"Ann {n}",
                        channel="web",
                        registered_at=utcnow(),
                    ),
                    subject="m-burst",
                    source="/services/members",
                )
                for n in range(20)
            ]
        await eventually(lambda: len(receiver.at("/burst")) >= len(sent), timeout_s=30)
    assert [r.headers["webhook-id"] for r in receiver.at("/burst")] == [e.id for e in sent]
