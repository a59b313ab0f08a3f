"""Sending to a real local receiver: signatures, retries, Retry-After, 410, redirects, timeouts,
ordering, isolation between endpoints, exactly one recorded success across replicas and crashes."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from sqlalchemy import func, select
from starlette.responses import Response

from services.webhooks.dispatcher import Dispatcher
from services.webhooks.models import WebhookDelivery
from shared.db import outbox_table
from tests.conftest import Databases, eventually
from tests.webhooks.conftest import (
    OPERATOR,
    Received,
    Receiver,
    Webhooks,
    make_webhooks,
    verify_standard_webhook,
)


def member(n: int = 0) -> dict[str, str]:
    return {"member_id": str(uuid.UUID(int=n)), "nickname": f"fan {n}", "channel": "web"}


async def test_a_delivery_carries_a_verifiable_standard_webhooks_signature(
    webhooks: Webhooks, receiver: Receiver
) -> None:
    endpoint = await webhooks.endpoint(receiver.url("/hook"), ["member.*"])
    event = await webhooks.publish("member.registered", member(1))
    assert await webhooks.dispatcher.run_once() == 1
    [got] = receiver.at("/hook")
    assert got.headers["webhook-id"] == event.id
    assert got.headers["content-type"] == "application/cloudevents+json"
    assert verify_standard_webhook(endpoint["secret"], got)
    assert not verify_standard_webhook("whsec_" + "A" * 44, got)
    assert got.event["type"] == "member.registered"
    assert got.event["data"]["member_id"] == member(1)["member_id"]
    [delivery] = await webhooks.deliveries()
    assert delivery["status"] == "succeeded"
    detail = await webhooks.delivery(delivery["id"])
    [attempt] = detail["attempts_log"]
    assert attempt["status_code"] == 200
    assert attempt["response_snippet"] == "ok"
    assert attempt["latency_ms"] >= 0


async def test_during_secret_rotation_both_signatures_are_sent(
    webhooks: Webhooks, receiver: Receiver
) -> None:
    endpoint = await webhooks.endpoint(receiver.url("/hook"))
    rotated = await webhooks.client.post(
        f"/v1/webhooks/endpoints/{endpoint['id']}/rotate-secret",
        json={"overlap_s": 3600},
        headers=OPERATOR,
    )
    assert rotated.status_code == 200
    new_secret = rotated.json()["secret"]
    assert new_secret != endpoint["secret"]
    await webhooks.publish("member.registered", member(1))
    await webhooks.dispatcher.run_once()
    [got] = receiver.at("/hook")
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    assert verify_standard_webhook(endpoint["secret"], got)
    assert verify_standard_webhook(new_secret, got)
    webhooks.clock.advance(3601)  # the overlap is over: only the new secret signs
    await webhooks.publish("member.registered", member(2))
    await webhooks.dispatcher.run_once()
    later = receiver.at("/hook")[1]
    assert verify_standard_webhook(new_secret, later)
    assert not verify_standard_webhook(endpoint["secret"], later)


async def test_a_500_is_retried_on_the_schedule_then_succeeds_with_the_same_id(
    webhooks: Webhooks, receiver: Receiver
) -> None:
    receiver.answer("/flaky", 500, 500)
    await webhooks.endpoint(receiver.url("/flaky"))
    event = await webhooks.publish("member.registered", member(1))
    assert await webhooks.dispatcher.run_once() == 1
    [delivery] = await webhooks.deliveries()
    assert delivery["status"] == "pending"
    assert delivery["last_status_code"] == 500
    assert await webhooks.dispatcher.run_once() == 0  # not due for 5 s
    webhooks.clock.advance(5)
    assert await webhooks.dispatcher.run_once() == 1
    webhooks.clock.advance(299)
    assert await webhooks.dispatcher.run_once() == 0  # the 2nd retry waits 5 min
    webhooks.clock.advance(1)
    assert await webhooks.dispatcher.run_once() == 1
    assert [r.headers["webhook-id"] for r in receiver.at("/flaky")] == [event.id] * 3
    detail = await webhooks.delivery(delivery["id"])
    assert detail["status"] == "succeeded"
    assert [a["status_code"] for a in detail["attempts_log"]] == [500, 500, 200]


async def test_the_retry_schedule_with_jitter_and_the_final_failure(
    webhooks: Webhooks,
) -> None:
    dispatcher = webhooks.dispatcher
    assert [dispatcher.retry_delay_s(n, None) for n in range(1, 9)] == [
        5.0,
        300.0,
        1800.0,
        7200.0,
        18000.0,
        36000.0,
        36000.0,
        None,
    ]
    dispatcher.rng = lambda: 1.0
    assert dispatcher.retry_delay_s(1, None) == 6.0  # up to 20 % later, never earlier
    assert dispatcher.retry_delay_s(2, 42.0) == 42.0  # Retry-After wins


async def test_retries_exhausted_mark_the_delivery_failed_and_replay_sends_it_again(
    databases: Databases, receiver: Receiver
) -> None:
    url = await databases.new("webhooks")
    async with make_webhooks(url, retry_schedule_s=[5.0]) as webhooks:
        receiver.answer("/down", 500, 500)
        await webhooks.endpoint(receiver.url("/down"))
        await webhooks.publish("member.registered", member(1))
        await webhooks.dispatcher.run_once()
        webhooks.clock.advance(10)
        await webhooks.dispatcher.run_once()
        [delivery] = await webhooks.deliveries()
        assert delivery["status"] == "failed"
        replayed = await webhooks.client.post(
            f"/v1/webhooks/deliveries/{delivery['id']}/replay", headers=OPERATOR
        )
        assert replayed.status_code == 200, replayed.text
        assert replayed.json()["status"] == "pending"
        assert await webhooks.dispatcher.run_once() == 1
        assert (await webhooks.delivery(delivery["id"]))["status"] == "succeeded"
        ids = {r.headers["webhook-id"] for r in receiver.at("/down")}
        assert len(ids) == 1


async def test_failed_deliveries_in_a_time_range_are_replayed(
    databases: Databases, receiver: Receiver
) -> None:
    url = await databases.new("webhooks")
    async with make_webhooks(url, retry_schedule_s=[]) as webhooks:
        receiver.answer("/down", 500, 500, 500)
        endpoint = await webhooks.endpoint(receiver.url("/down"))
        for n in range(3):
            await webhooks.publish("member.registered", member(n))
            await webhooks.dispatcher.run_once()
        assert {d["status"] for d in await webhooks.deliveries()} == {"failed"}
        response = await webhooks.client.post(
            f"/v1/webhooks/endpoints/{endpoint['id']}/replay",
            json={"since": (webhooks.clock() - timedelta(hours=1)).isoformat()},
            headers=OPERATOR,
        )
        assert response.json() == {"replayed": 3}
        assert await webhooks.dispatcher.run_once() == 3
        assert {d["status"] for d in await webhooks.deliveries()} == {"succeeded"}
        future = await webhooks.client.post(
            f"/v1/webhooks/endpoints/{endpoint['id']}/replay",
            json={"since": (webhooks.clock() + timedelta(hours=1)).isoformat()},
            headers=OPERATOR,
        )
        assert future.json() == {"replayed": 0}


async def test_retry_after_on_429_is_honoured(webhooks: Webhooks, receiver: Receiver) -> None:
    receiver.answer("/busy", 429, headers={"Retry-After": "120"})
    await webhooks.endpoint(receiver.url("/busy"))
    await webhooks.publish("member.registered", member(1))
    await webhooks.dispatcher.run_once()
    webhooks.clock.advance(60)  # past the usual 5 s, before the asked-for 120 s
    assert await webhooks.dispatcher.run_once() == 0
    webhooks.clock.advance(61)
    assert await webhooks.dispatcher.run_once() == 1
    assert [d["status"] for d in await webhooks.deliveries()] == ["succeeded"]


async def test_410_disables_the_endpoint_at_once_and_tells_operators(
    webhooks: Webhooks, receiver: Receiver
) -> None:
    receiver.answer("/gone", 410)
    endpoint = await webhooks.endpoint(receiver.url("/gone"))
    for n in range(2):
        await webhooks.publish("member.registered", member(n))
    assert await webhooks.dispatcher.run_once() == 1
    got = await webhooks.client.get(f"/v1/webhooks/endpoints/{endpoint['id']}", headers=OPERATOR)
    assert got.json()["enabled"] is False
    assert "410" in got.json()["disabled_reason"]
    webhooks.clock.advance(3600)
    assert await webhooks.dispatcher.run_once() == 0
    assert len(receiver.at("/gone")) == 1
    async with webhooks.runtime.db.session() as session:
        types = list(await session.scalars(select(outbox_table.c.type)))
    assert types == ["webhook.endpoint_disabled"]


async def test_an_endpoint_failing_for_days_is_disabled(
    webhooks: Webhooks, receiver: Receiver
) -> None:
    receiver.answer("/broken", *([500] * 20))
    endpoint = await webhooks.endpoint(receiver.url("/broken"))
    await webhooks.publish("member.registered", member(1))
    await webhooks.dispatcher.run_once()
    webhooks.clock.advance(4 * 86400)
    await webhooks.publish("member.registered", member(2))
    await webhooks.dispatcher.run_once()
    got = await webhooks.client.get(f"/v1/webhooks/endpoints/{endpoint['id']}", headers=OPERATOR)
    assert got.json()["enabled"] is True
    webhooks.clock.advance(1 * 86400 + 1)
    await webhooks.dispatcher.run_once()
    got = await webhooks.client.get(f"/v1/webhooks/endpoints/{endpoint['id']}", headers=OPERATOR)
    assert got.json()["enabled"] is False
    assert "failing" in got.json()["disabled_reason"]
    reenabled = await webhooks.client.patch(
        f"/v1/webhooks/endpoints/{endpoint['id']}", json={"enabled": True}, headers=OPERATOR
    )
    assert reenabled.json()["enabled"] is True
    assert reenabled.json()["failing_since"] is None


async def test_a_redirect_is_a_failure_and_is_not_followed(
    webhooks: Webhooks, receiver: Receiver
) -> None:
    receiver.answer("/moved", 307, headers={"Location": receiver.url("/elsewhere")})
    await webhooks.endpoint(receiver.url("/moved"))
    await webhooks.publish("member.registered", member(1))
    await webhooks.dispatcher.run_once()
    assert receiver.at("/elsewhere") == []
    [delivery] = await webhooks.deliveries()
    assert delivery["status"] == "pending"
    assert "redirect" in delivery["last_error"]


async def test_a_receiver_slower_than_the_timeout_is_a_failure(
    databases: Databases, receiver: Receiver
) -> None:
    release = asyncio.Event()

    async def hang(_: Received) -> Response:
        await release.wait()
        return Response("late")

    receiver.behaviours["/slow"] = hang
    url = await databases.new("webhooks")
    async with make_webhooks(url, total_timeout_s=0.3, connect_timeout_s=0.2) as webhooks:
        await webhooks.endpoint(receiver.url("/slow"))
        await webhooks.publish("member.registered", member(1))
        await webhooks.dispatcher.run_once()
        release.set()
        [delivery] = await webhooks.deliveries()
        assert delivery["status"] == "pending"
        assert "timed out" in delivery["last_error"]


async def test_events_reach_one_endpoint_in_the_order_they_were_recorded(
    webhooks: Webhooks, receiver: Receiver
) -> None:
    await webhooks.endpoint(receiver.url("/ordered"))
    events = [await webhooks.publish("member.registered", member(n)) for n in range(12)]
    await webhooks.dispatcher.run_once()
    assert [r.headers["webhook-id"] for r in receiver.at("/ordered")] == [e.id for e in events]


async def test_events_of_different_aggregates_are_in_flight_to_one_endpoint_together(
    webhooks: Webhooks, receiver: Receiver
) -> None:
    second_arrived = asyncio.Event()

    async def first_waits_for_second(received: Received) -> Response:
        if received.event["subject"] == "member-a":
            await asyncio.wait_for(second_arrived.wait(), 10)  # sequential sending: a timeout
        else:
            second_arrived.set()
        return Response("ok")

    receiver.behaviours["/keys"] = first_waits_for_second
    await webhooks.endpoint(receiver.url("/keys"))
    await webhooks.publish("member.registered", member(1), subject="member-a")
    await webhooks.publish("member.registered", member(2), subject="member-b")
    assert await webhooks.dispatcher.run_once() == 2
    deliveries = await webhooks.deliveries()
    assert [(d["status"], d["attempts"]) for d in deliveries] == [("succeeded", 1)] * 2


async def test_a_failing_endpoint_is_not_tried_once_per_aggregate_in_a_turn(
    webhooks: Webhooks, receiver: Receiver
) -> None:
    receiver.answer("/down", *([500] * 20))
    await webhooks.endpoint(receiver.url("/down"))
    for n in range(10):
        await webhooks.publish("member.registered", member(n), subject=f"member-{n}")
    in_flight = webhooks.dispatcher.settings.dispatch_concurrency_per_endpoint
    # The requests already in flight when the first failure is seen, and no more.
    assert await webhooks.dispatcher.run_once() == in_flight < 10
    assert len(receiver.at("/down")) == in_flight


async def test_a_hung_endpoint_does_not_delay_another(
    webhooks: Webhooks, receiver: Receiver
) -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def hang(_: Received) -> Response:
        entered.set()
        await release.wait()
        return Response("finally")

    receiver.behaviours["/hung"] = hang
    await webhooks.endpoint(receiver.url("/hung"))
    await webhooks.endpoint(receiver.url("/healthy"))
    for n in range(3):
        await webhooks.publish("member.registered", member(n))
    run = asyncio.create_task(webhooks.dispatcher.run_once())
    await asyncio.wait_for(entered.wait(), 10)
    await eventually(lambda: len(receiver.at("/healthy")) == 3)
    assert len(receiver.at("/hung")) == 1  # still inside the first request
    release.set()
    await asyncio.wait_for(run, 10)
    assert len(receiver.at("/hung")) == 3


async def test_two_replicas_deliver_each_event_exactly_once(
    webhooks: Webhooks, receiver: Receiver
) -> None:
    for n in range(4):
        await webhooks.endpoint(receiver.url(f"/r{n}"))
    for n in range(10):
        await webhooks.publish("member.registered", member(n))
    other = Dispatcher(
        webhooks.runtime.db, webhooks.dispatcher.settings, clock=webhooks.clock, name="other"
    )
    try:
        await asyncio.gather(webhooks.dispatcher.run_once(), other.run_once())
        await asyncio.gather(webhooks.dispatcher.run_once(), other.run_once())
    finally:
        await other.close()
    seen = [(r.path, r.headers["webhook-id"]) for r in receiver.received]
    assert len(seen) == 40
    assert len(set(seen)) == 40
    async with webhooks.runtime.db.session() as session:
        succeeded = await session.scalar(
            select(func.count())
            .select_from(WebhookDelivery)
            .where(WebhookDelivery.status == "succeeded")
        )
    assert succeeded == 40


async def test_after_a_dispatcher_crash_the_event_is_resent_and_recorded_once(
    webhooks: Webhooks, receiver: Receiver
) -> None:
    entered, never = asyncio.Event(), asyncio.Event()
    calls = 0

    async def first_hangs(_: Received) -> Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            entered.set()
            await never.wait()  # no answer: the sender dies meanwhile
        return Response("ok")

    receiver.behaviours["/crash"] = first_hangs
    await webhooks.endpoint(receiver.url("/crash"))
    event = await webhooks.publish("member.registered", member(1))
    crashed = Dispatcher(
        webhooks.runtime.db, webhooks.dispatcher.settings, clock=webhooks.clock, name="crashed"
    )
    run = asyncio.create_task(crashed.run_once())
    await asyncio.wait_for(entered.wait(), 10)
    run.cancel()  # dies mid-request: nothing about this attempt was recorded
    await asyncio.gather(run, return_exceptions=True)
    await crashed.close()
    webhooks.clock.advance(31)  # past any lease the dead replica may have left
    assert await webhooks.dispatcher.run_once() == 1
    assert [r.headers["webhook-id"] for r in receiver.at("/crash")] == [event.id, event.id]
    [delivery] = await webhooks.deliveries()
    assert delivery["status"] == "succeeded"
    assert len((await webhooks.delivery(delivery["id"]))["attempts_log"]) == 1
    never.set()


async def test_a_test_event_is_sent_on_request(webhooks: Webhooks, receiver: Receiver) -> None:
    endpoint = await webhooks.endpoint(receiver.url("/hook"), ["post.published"])
    response = await webhooks.client.post(
        f"/v1/webhooks/endpoints/{endpoint['id']}/test", headers=OPERATOR
    )
    assert response.status_code == 202, response.text
    assert response.json()["event_type"] == "webhook.test"
    await webhooks.dispatcher.run_once()
    [got] = receiver.at("/hook")
    assert got.event["type"] == "webhook.test"
    assert verify_standard_webhook(endpoint["secret"], got)


async def test_a_commit_that_records_deliveries_wakes_the_running_dispatcher(
    databases: Databases, receiver: Receiver
) -> None:
    url = await databases.new("webhooks")
    # Polling alone would take an hour: only the commit's wake-up delivers within the wait.
    async with make_webhooks(url, dispatch_poll_interval_s=3600.0) as webhooks:
        await webhooks.endpoint(receiver.url("/woken"))
        loop = asyncio.create_task(webhooks.dispatcher.run_forever())
        try:
            first = await webhooks.publish("member.registered", member(1))
            await eventually(lambda: len(receiver.at("/woken")) == 1, timeout_s=10)
            second = await webhooks.publish("member.registered", member(2))
            await eventually(lambda: len(receiver.at("/woken")) == 2, timeout_s=10)

            async def all_settled() -> bool:
                return {d["status"] for d in await webhooks.deliveries()} == {"succeeded"}

            await eventually(all_settled, timeout_s=10)
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)
    assert [r.headers["webhook-id"] for r in receiver.at("/woken")] == [first.id, second.id]


async def test_deliveries_recorded_while_an_endpoint_is_served_go_out_in_the_same_turn(
    webhooks: Webhooks, receiver: Receiver
) -> None:
    later: list[str] = []

    async def records_another(received: Received) -> Response:
        if received.event["subject"] == "first":
            later.append((await webhooks.publish("member.registered", member(2), "then")).id)
        return Response("ok")

    receiver.behaviours["/busy"] = records_another
    await webhooks.endpoint(receiver.url("/busy"))
    first = await webhooks.publish("member.registered", member(1), subject="first")
    assert await webhooks.dispatcher.run_once() == 2
    assert [r.headers["webhook-id"] for r in receiver.at("/busy")] == [first.id, *later]
    assert [d["status"] for d in await webhooks.deliveries()] == ["succeeded"] * 2


async def test_a_kept_alive_connection_the_partner_closed_is_not_reused(
    webhooks: Webhooks,
) -> None:
    """The partner answers, then drops the idle connection (as on its keep-alive timeout)."""
    connections: list[int] = []
    closed = asyncio.Event()

    async def answer_once_then_hang_up(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        connections.append(len(connections))
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        closed.set()

    server = await asyncio.start_server(answer_once_then_hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        await webhooks.endpoint(f"http://127.0.0.1:{port}/hook")
        await webhooks.publish("member.registered", member(1))
        assert await webhooks.dispatcher.run_once() == 1
        await asyncio.wait_for(closed.wait(), 10)
        await webhooks.publish("member.registered", member(2))
        assert await webhooks.dispatcher.run_once() == 1
    assert len(connections) == 2
    assert [d["status"] for d in await webhooks.deliveries()] == ["succeeded"] * 2
