"""The idempotent consumer: duplicates, poison messages, dead letters and their replay."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics.repository import GrowthRepository
from shared.broker import LocalBroker
from shared.bus import ensure_topics
from shared.consumer import (
    IDLE_FETCH_MAX_WAIT_MS,
    Batched,
    ConsumedEvent,
    EventConsumer,
    claim_many_in_inbox,
    replay_dead_letters,
)
from shared.db import Database, inbox_table
from shared.events.contracts.members import MemberRegistered
from shared.events.envelope import CloudEvent
from shared.events.topics import MEMBERS, dlq_topic
from shared.migrations import upgrade
from shared.settings import ServiceSettings
from tests.conftest import Databases, eventually, read_topic, settings_for

MIGRATIONS = Path(__file__).parents[2] / "services" / "analytics" / "migrations"


class ConsumerSettings(ServiceSettings):
    service_name = "dedupe"


def envelope(member_id: str) -> CloudEvent:
    data = MemberRegistered(
        member_id=member_id, nickname="fan", channel="app", registered_at=datetime.now(UTC)
    )
    payload = data.model_dump(mode="json")
    return CloudEvent(source="/tests", type="member.registered", subject=member_id, data=payload)


async def produce(broker: LocalBroker, *values: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(MEMBERS.name, value=value, key=b"k")
    finally:
        await producer.stop()


class Harness:
    def __init__(self, consumer: EventConsumer) -> None:
        self.consumer = consumer
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Harness:
        self.task = asyncio.create_task(self.consumer.run())
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.consumer.close()


async def consumer_with(
    databases: Databases, broker: LocalBroker, handler: object, **settings: object
) -> EventConsumer:
    db = Database(await databases.new("consumer"))
    await upgrade(db, MIGRATIONS)
    await ensure_topics(settings_for(ConsumerSettings, broker, db.url), [MEMBERS.name])
    return EventConsumer(
        db,
        settings_for(ConsumerSettings, broker, db.url, **settings),
        {"member.registered": handler},  # type: ignore[dict-item]
    )


async def test_an_inbox_claim_returns_only_the_events_not_seen_before(
    databases: Databases,
) -> None:
    db = Database(await databases.new("consumer"))
    await upgrade(db, MIGRATIONS)
    async with db.session() as session:
        first = await claim_many_in_inbox(
            session, "g", [("e-1", "member.registered"), ("e-2", "post.liked"), ("e-1", "x")]
        )
    async with db.session() as session:
        second = await claim_many_in_inbox(session, "g", [("e-2", "post.liked"), ("e-3", "t")])
        other_group = await claim_many_in_inbox(session, "h", [("e-2", "post.liked")])
        again = await claim_many_in_inbox(session, "h", [("e-2", "post.liked")])
    assert (first, second, other_group, again) == ({"e-1", "e-2"}, {"e-3"}, {"e-2"}, set())
    async with db.session() as session:
        rows = (await session.execute(select(inbox_table))).all()
    assert {(r.consumer, r.event_id, r.type) for r in rows} == {
        ("g", "e-1", "x"),  # the last type given for an id in one claim
        ("g", "e-2", "post.liked"),
        ("g", "e-3", "t"),
        ("h", "e-2", "post.liked"),
    }
    assert all(r.processed_at.tzinfo is not None for r in rows)
    await db.dispose()


async def test_the_same_event_delivered_twice_has_one_effect(
    databases: Databases, broker: LocalBroker
) -> None:
    effects: Counter[str] = Counter()

    async def count(session: AsyncSession, event: ConsumedEvent) -> None:
        effects[event.data.member_id] += 1

    consumer = await consumer_with(databases, broker, count)
    event = envelope("m-1")
    await produce(broker, event.to_json(), event.to_json(), envelope("m-2").to_json())
    async with Harness(consumer):
        await eventually(lambda: consumer.processed == 3)
    assert effects == Counter({"m-1": 1, "m-2": 1})
    await consumer.db.dispose()


async def test_a_failed_handler_rolls_back_its_inbox_row_and_is_retried(
    databases: Databases, broker: LocalBroker
) -> None:
    attempts: Counter[str] = Counter()

    async def flaky(session: AsyncSession, event: ConsumedEvent) -> None:
        attempts[event.id] += 1
        if attempts[event.id] == 1:
            raise RuntimeError("first attempt fails")

    consumer = await consumer_with(databases, broker, flaky, consumer_max_attempts=3)
    event = envelope("m-1")
    await produce(broker, event.to_json())
    async with Harness(consumer):
        await eventually(lambda: consumer.processed == 1)
    assert attempts[event.id] == 2
    await consumer.db.dispose()


async def test_poison_messages_go_to_the_dead_letter_topic_and_the_partition_moves_on(
    databases: Databases, broker: LocalBroker
) -> None:
    handled: list[str] = []

    async def handler(session: AsyncSession, event: ConsumedEvent) -> None:
        if event.data.member_id == "always-fails":
            raise ValueError("cannot handle this member")
        handled.append(event.data.member_id)

    consumer = await consumer_with(databases, broker, handler, consumer_max_attempts=2)
    bad_shape = CloudEvent(source="/tests", type="member.registered", data={"nope": 1})
    await produce(
        broker,
        b"this is not json",
        bad_shape.to_json(),
        envelope("always-fails").to_json(),
        envelope("after-the-poison").to_json(),
    )
    async with Harness(consumer):
        await eventually(lambda: handled == ["after-the-poison"])

    letters = await read_topic(broker, dlq_topic("dedupe"), 3)
    assert len(letters) == 3
    headers = [dict(letter.headers) for letter in letters]
    kinds = [h["dlq-error-type"] for h in headers]
    assert kinds == [b"PoisonMessage", b"PoisonMessage", b"ValueError"]
    assert all(h["dlq-original-topic"] == MEMBERS.name.encode() for h in headers)
    assert b"cannot handle this member" in headers[2]["dlq-error"]
    assert letters[0].value == b"this is not json"
    await consumer.db.dispose()


async def test_replayed_dead_letters_are_processed_once_the_cause_is_fixed(
    databases: Databases, broker: LocalBroker
) -> None:
    broken = True
    handled: Counter[str] = Counter()

    async def handler(session: AsyncSession, event: ConsumedEvent) -> None:
        if broken:
            raise ValueError("bug")
        handled[event.data.member_id] += 1

    consumer = await consumer_with(databases, broker, handler, consumer_max_attempts=1)
    await produce(broker, envelope("m-1").to_json())
    async with Harness(consumer):
        await eventually(lambda: consumer.dead_lettered == 1)
        broken = False
        replayed = await replay_dead_letters(consumer.settings, "dedupe", idle_s=2.0)
        assert replayed == 1
        await eventually(lambda: handled["m-1"] == 1)
    assert handled == Counter({"m-1": 1})
    await consumer.db.dispose()


async def test_a_failure_inside_a_batch_applies_every_event_exactly_once(
    databases: Databases, broker: LocalBroker
) -> None:
    failed_once: set[str] = set()

    async def count_in_db(session: AsyncSession, event: ConsumedEvent) -> None:
        await GrowthRepository(session).count_registration(event.data.registered_at.date())
        if event.data.member_id == "m-3" and "m-3" not in failed_once:
            failed_once.add("m-3")
            raise RuntimeError("fails once, after writing")

    consumer = await consumer_with(databases, broker, count_in_db, consumer_max_attempts=3)
    events = [envelope(f"m-{n}") for n in range(6)]
    await produce(broker, *(e.to_json() for e in events), events[0].to_json())
    async with Harness(consumer):
        await eventually(lambda: consumer.processed >= 7)

    async with consumer.db.session() as session:
        counted = await GrowthRepository(session).registered_between(None, None)
    assert counted == 6
    assert failed_once == {"m-3"}
    await consumer.db.dispose()


async def test_a_requested_stop_commits_the_offsets_of_what_was_applied(
    databases: Databases, broker: LocalBroker
) -> None:
    async def noop(session: AsyncSession, event: ConsumedEvent) -> None:
        return None

    consumer = await consumer_with(databases, broker, noop)
    await produce(broker, *(envelope(f"m-{i}").to_json() for i in range(5)))
    task = asyncio.create_task(consumer.run())
    await eventually(lambda: consumer.processed == 5)
    consumer.request_stop()
    await asyncio.wait_for(task, 10)  # returns by itself: nothing was cancelled
    await consumer.close()
    reader = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap_servers, group_id=consumer.group)
    await reader.start()
    try:
        partitions = reader.partitions_for_topic(MEMBERS.name) or set()
        committed = 0
        for partition in partitions:
            committed += await reader.committed(TopicPartition(MEMBERS.name, partition)) or 0
    finally:
        await reader.stop()
    assert committed == 5
    await consumer.db.dispose()


async def test_a_fetch_across_partitions_is_applied_once_in_key_order_and_fully_committed(
    databases: Databases, broker: LocalBroker
) -> None:
    applied: list[tuple[str, str]] = []  # (member, nickname) in the order handled
    next_offsets: dict[int, int] = {}

    async def record(session: AsyncSession, events: list[ConsumedEvent]) -> None:
        applied.extend((e.data.member_id, e.data.nickname) for e in events)
        for e in events:
            next_offsets[e.partition] = max(next_offsets.get(e.partition, 0), e.offset + 1)

    consumer = await consumer_with(databases, broker, Batched(record))
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers)
    await producer.start()
    try:  # 8 members over the 6 partitions, 10 events each, all waiting before the start
        for n in range(10):
            for member in range(8):
                data = MemberRegistered(
                    member_id=f"m-{member}",
                    nickname=f"v{n}",
                    channel="app",
                    registered_at=datetime.now(UTC),
                )
                event = CloudEvent(
                    source="/tests",
                    type="member.registered",
                    subject=data.member_id,
                    data=data.model_dump(mode="json"),
                )
                await producer.send(MEMBERS.name, value=event.to_json(), key=b"m-%d" % member)
        await producer.flush()
    finally:
        await producer.stop()
    task = asyncio.create_task(consumer.run())
    await eventually(lambda: consumer.processed == 80)
    consumer.request_stop()
    await asyncio.wait_for(task, 10)
    await consumer.close()
    for member in range(8):
        versions = [v for m, v in applied if m == f"m-{member}"]
        assert versions == [f"v{n}" for n in range(10)]
    assert len(applied) == 80
    # Compared with what was consumed, not end_offsets(): Tansu answers "latest" with
    # the last record batch's base offset + 1.
    reader = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap_servers, group_id=consumer.group)
    await reader.start()
    try:
        committed = {
            p: await reader.committed(TopicPartition(MEMBERS.name, p)) for p in next_offsets
        }
    finally:
        await reader.stop()
    assert len(next_offsets) > 1
    assert committed == next_offsets
    await consumer.db.dispose()


async def committed_total(broker: LocalBroker, group: str) -> int:
    reader = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap_servers, group_id=group)
    await reader.start()
    try:
        partitions = reader.partitions_for_topic(MEMBERS.name) or set()
        return sum(
            [await reader.committed(TopicPartition(MEMBERS.name, p)) or 0 for p in partitions]
        )
    finally:
        await reader.stop()


async def test_offsets_of_applied_events_are_committed_once_the_consumer_falls_idle(
    databases: Databases, broker: LocalBroker
) -> None:
    async def noop(session: AsyncSession, event: ConsumedEvent) -> None:
        return None

    consumer = await consumer_with(databases, broker, noop)
    await produce(broker, *(envelope(f"m-{i}").to_json() for i in range(4)))
    async with Harness(consumer):
        await eventually(lambda: consumer.processed == 4)
        # Still running, nothing more to read: the pending offsets go out without a stop.
        await eventually(lambda: committed_total(broker, consumer.group), interval_s=0.2)
        assert await committed_total(broker, consumer.group) == 4
    await consumer.db.dispose()


async def test_an_idle_consumer_parks_its_fetches_longer_and_shortens_them_on_new_records(
    databases: Databases, broker: LocalBroker
) -> None:
    handled: list[str] = []

    async def record(session: AsyncSession, event: ConsumedEvent) -> None:
        handled.append(event.data.member_id)

    consumer = await consumer_with(databases, broker, record, consumer_fetch_max_wait_ms=40)
    consumer.idle_after_s = 1.0
    async with Harness(consumer):
        await eventually(lambda: consumer.fetch_max_wait_ms == IDLE_FETCH_MAX_WAIT_MS)
        await produce(broker, envelope("wakes-it").to_json())
        await eventually(lambda: handled == ["wakes-it"])
        assert consumer.fetch_max_wait_ms == 40
    await consumer.db.dispose()
