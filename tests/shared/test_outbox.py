"""Outbox -> relay -> Tansu -> consumer, with the real broker and real databases."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from cloudevents.core.bindings.kafka import KafkaMessage, from_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as SdkCloudEvent
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.broker import LocalBroker
from shared.consumer import ConsumedEvent, EventConsumer
from shared.db import Database, outbox_table
from shared.events.contracts.members import MemberRegistered
from shared.events.envelope import CloudEvent, new_event_id
from shared.migrations import upgrade
from shared.outbox import (
    INSERT_EVENTS,
    OutboxRelay,
    add_event,
    add_events,
    murmur2,
    outbox_rows,
    partition_for,
)
from shared.settings import ServiceSettings
from tests.conftest import Databases, eventually, read_topic, settings_for

MIGRATIONS = Path(__file__).parents[2] / "services" / "members" / "migrations"


class ProducerSettings(ServiceSettings):
    service_name = "producer"


class ConsumerSettings(ServiceSettings):
    service_name = "consumer"


def registered(n: int) -> MemberRegistered:
    return MemberRegistered(
        member_id=f"m-{n}", nickname=f"fan {n}", channel="app", registered_at=datetime.now(UTC)
    )


async def migrated(url: str) -> Database:
    db = Database(url)
    await upgrade(db, MIGRATIONS)
    return db


async def write_events(db: Database, count: int, start: int = 0) -> list[str]:
    ids = []
    for n in range(start, start + count):
        async with db.session() as session:
            event = await add_event(session, registered(n), subject=f"m-{n}", source="/tests")
            ids.append(event.id)
    return ids


async def test_event_written_in_a_transaction_reaches_a_consumer_once(
    databases: Databases, broker: LocalBroker
) -> None:
    producer_db = await migrated(await databases.new("producer"))
    consumer_db = await migrated(await databases.new("consumer"))
    seen: Counter[str] = Counter()

    async def on_registered(session: AsyncSession, event: ConsumedEvent) -> None:
        assert isinstance(event.data, MemberRegistered)
        seen[event.data.member_id] += 1

    relay = OutboxRelay(producer_db, settings_for(ProducerSettings, broker, producer_db.url))
    consumer = EventConsumer(
        consumer_db,
        settings_for(ConsumerSettings, broker, consumer_db.url),
        {"member.registered": on_registered},
    )
    tasks = [asyncio.create_task(relay.run()), asyncio.create_task(consumer.run())]
    try:
        await write_events(producer_db, 25)
        await eventually(lambda: len(seen) == 25)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await consumer.close()
        await relay.close()
    assert set(seen.values()) == {1}
    async with producer_db.session() as session:
        pending = await session.scalar(
            select(func.count()).select_from(outbox_table).where(outbox_table.c.sent_at.is_(None))
        )
    assert pending == 0
    await producer_db.dispose()
    await consumer_db.dispose()


async def test_rolled_back_transaction_publishes_nothing(databases: Databases) -> None:
    db = await migrated(await databases.new("producer"))
    try:
        async with db.session() as session:
            await add_event(session, registered(1), subject="m-1", source="/tests")
            raise RuntimeError("the state change failed")
    except RuntimeError:
        pass
    async with db.session() as session:
        assert await session.scalar(select(func.count()).select_from(outbox_table)) == 0
    await db.dispose()


async def test_published_message_is_a_cloudevent_the_official_sdk_parses(
    databases: Databases, broker: LocalBroker
) -> None:
    db = await migrated(await databases.new("producer"))
    relay = OutboxRelay(db, settings_for(ProducerSettings, broker, db.url))
    [event_id] = await write_events(db, 1)
    assert await relay.publish_batch() == 1
    await relay.close()
    [record] = await read_topic(broker, "community.members.v1", 1)
    assert record.key == b"m-0"
    message = KafkaMessage(headers=dict(record.headers), key=record.key, value=record.value)
    parsed = from_kafka(message, JSONFormat(), SdkCloudEvent)
    assert parsed.get_id() == event_id
    assert parsed.get_type() == "member.registered"
    assert parsed.get_source() == "/tests"
    assert parsed.get_subject() == "m-0"
    assert parsed.get_extension("schemaversion") == 1
    assert parsed.get_data()["member_id"] == "m-0"
    await db.dispose()


async def test_events_written_together_are_stored_as_one_at_a_time_would_be(
    databases: Databases,
) -> None:
    """``add_events`` takes another statement than ``add_event`` (on PostgreSQL, one array a
    column); the rows must come out the same, in the order given."""
    db = await migrated(await databases.new("producer"))
    async with db.session() as session:
        one = await add_event(session, registered(0), subject="m-0", source="/tests")
    async with db.session() as session:
        items = [(registered(n), f"m-{n}") for n in (1, 2, 3)]
        many = await add_events(session, items, source="/tests")
    async with db.session() as session:
        rows = (await session.execute(select(outbox_table).order_by(outbox_table.c.id))).all()
    assert [row.event_id for row in rows] == [one.id, *many]
    for n, row in enumerate(rows):
        envelope = CloudEvent.from_json(row.payload)
        assert (envelope.id, envelope.subject, row.key) == (row.event_id, f"m-{n}", f"m-{n}")
        assert (row.topic, row.type) == ("community.members.v1", "member.registered")
        assert row.headers == {"content-type": "application/cloudevents+json"}
        assert row.created_at.utcoffset() == timedelta(0)
        assert row.created_at == envelope.time
        assert (row.sent_at, row.attempts) == (None, 0)
    await db.dispose()


async def test_a_batch_marks_sent_exactly_the_rows_it_published(
    databases: Databases, broker: LocalBroker
) -> None:
    db = await migrated(await databases.new("producer"))
    ids = await write_events(db, 5)
    relay = OutboxRelay(db, settings_for(ProducerSettings, broker, db.url, relay_batch_size=3))
    assert await relay.publish_batch() == 3
    await relay.close()
    async with db.session() as session:
        rows = (
            await session.execute(
                select(
                    outbox_table.c.event_id, outbox_table.c.sent_at, outbox_table.c.attempts
                ).order_by(outbox_table.c.id)
            )
        ).all()
    assert [r.event_id for r in rows] == ids
    assert [r.sent_at is not None for r in rows] == [True, True, True, False, False]
    assert [r.attempts for r in rows] == [1, 1, 1, 0, 0]
    records = await read_topic(broker, "community.members.v1", 4, timeout_s=3)
    assert sorted(CloudEvent.from_json(r.value or b"").id for r in records) == sorted(ids[:3])
    await db.dispose()


async def test_the_relay_reads_pending_rows_in_order_from_the_partial_index(
    databases: Databases,
) -> None:
    """The pending read walks an index of pending rows only, in id order: no sort, no
    table scan, and marked rows leave the index instead of piling up in front."""
    db = await migrated(await databases.new("producer"))
    relay = OutboxRelay(db, settings_for(ProducerSettings, _Offline(), db.url))  # type: ignore[arg-type]
    query = relay._pending_rows.compile(db.engine, compile_kwargs={"literal_binds": True})
    async with db.engine.connect() as conn:
        if db.is_sqlite:
            definition = await conn.scalar(
                text("SELECT sql FROM sqlite_master WHERE name = 'ix_outbox_pending'")
            )
        else:
            definition = await conn.scalar(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_outbox_pending'")
            )
        assert definition is not None
        assert "(id)" in definition.replace('"', "")
        assert "sent_at IS NULL" in definition
        if db.is_sqlite:
            explained = await conn.execute(text(f"EXPLAIN QUERY PLAN {query}"))
            plan = " ".join(row[-1] for row in explained)
        else:
            # On a near-empty table any plan is cheap; rule out the ones that would not scale.
            await conn.execute(text("SET enable_seqscan = off"))
            await conn.execute(text("SET enable_bitmapscan = off"))
            plan = " ".join(row[0] for row in await conn.execute(text(f"EXPLAIN {query}")))
    assert "ix_outbox_pending" in plan
    assert "sort" not in plan.lower()
    assert "TEMP B-TREE" not in plan
    await db.dispose()


async def test_marking_sent_is_planned_for_its_ids_after_the_outbox_grew_from_empty(
    pg_databases: Databases,
) -> None:
    """A prepared statement's generic plan, chosen while the outbox was near empty, must
    not be what marks a batch sent once the outbox holds thousands of rows: that plan
    scans the whole table, testing every row against every id of the batch."""
    db = await migrated(await pg_databases.new("producer"))
    relay = OutboxRelay(db, settings_for(ProducerSettings, _Offline(), db.url))  # type: ignore[arg-type]
    mark = relay._mark_sent.compile(db.engine)
    lock = relay._lock.compile(db.engine, compile_kwargs={"literal_binds": True})
    async with db.engine.connect() as conn:
        await conn.exec_driver_sql(f"PREPARE mark (timestamptz, integer, bigint[]) AS {mark}")
        # Run on a near-empty outbox, the statement gets a generic plan after five runs.
        for n in range(6):
            await conn.exec_driver_sql(f"EXECUTE mark (now(), 1, ARRAY[{n}]::bigint[])")
        _, rows = outbox_rows(((registered(n), f"m-{n}", None) for n in range(3000)), "/t")
        await conn.execute(INSERT_EVENTS, rows)
        await conn.commit()
        ids = (await conn.scalars(select(outbox_table.c.id).limit(50))).all()
        array = "ARRAY[" + ",".join(map(str, ids)) + "]::bigint[]"
        explain = f"EXPLAIN EXECUTE mark (now(), 1, {array})"
        generic = " ".join(row[0] for row in await conn.exec_driver_sql(explain))
        await conn.rollback()
        assert "Seq Scan" in generic  # what marking would run without the relay's setting
        await conn.execute(text(str(lock)))  # the relay's first statement in a batch
        planned = " ".join(row[0] for row in await conn.exec_driver_sql(explain))
        await conn.rollback()
    assert "Seq Scan" not in planned
    assert "pk_outbox" in planned
    await db.dispose()


async def test_the_relay_hands_over_closed_batches_so_none_waits_out_linger(
    databases: Databases, broker: LocalBroker
) -> None:
    """The relay packs whole batches itself; an open one would sit linger_ms in the
    producer waiting for sends that never come."""
    db = await migrated(await databases.new("producer"))
    relay = OutboxRelay(db, settings_for(ProducerSettings, broker, db.url))
    await write_events(db, 1)
    assert await relay.publish_batch() == 1
    producer = relay._producer
    assert producer is not None
    closed: list[bool] = []
    send_batch = producer.send_batch

    async def watched(builder: Any, topic: str, *, partition: int) -> Any:
        closed.append(builder.closed())
        return await send_batch(builder, topic, partition=partition)

    producer.send_batch = watched  # type: ignore[method-assign]
    await write_events(db, 30, start=1)
    assert await relay.publish_batch() == 30
    assert closed
    assert all(closed)
    await relay.close()
    await db.dispose()


def test_the_outbox_payload_is_the_cloudevent_the_envelope_model_writes() -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    items = [(registered(1), 'm-"1"', None), (registered(2), "会员-2", traceparent)]
    ids, rows = outbox_rows(items, "/services/members")
    for (data, subject, trace), event_id, row in zip(items, ids, rows, strict=True):
        assert row["event_id"] == event_id
        assert isinstance(row["created_at"], datetime)
        model = CloudEvent(
            id=event_id,
            source="/services/members",
            type="member.registered",
            subject=subject,
            time=row["created_at"],
            partitionkey=subject,
            traceparent=trace,
            data=data.model_dump(mode="json"),
        )
        assert row["payload"] == model.to_json().decode()
        assert CloudEvent.from_json(str(row["payload"])) == model


async def test_two_relays_on_one_postgres_database_publish_each_event_once(
    pg_databases: Databases, broker: LocalBroker
) -> None:
    db = await migrated(await pg_databases.new("producer"))
    settings = settings_for(ProducerSettings, broker, db.url, relay_batch_size=20)
    replicas = [OutboxRelay(Database(db.url), settings) for _ in range(2)]
    ids = await write_events(db, 200)
    tasks = [asyncio.create_task(relay.run()) for relay in replicas]
    pending = select(func.count()).select_from(outbox_table)

    async def all_sent() -> bool:
        async with db.session() as session:
            left = await session.scalar(pending.where(outbox_table.c.sent_at.is_(None)))
        return left == 0

    try:
        await eventually(all_sent)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for relay in replicas:
            await relay.close()
            await relay.db.dispose()
    # One more than written: a duplicate publish would show up here.
    records = await read_topic(broker, "community.members.v1", len(ids) + 1, timeout_s=5)
    published = [CloudEvent.from_json(r.value).id for r in records]
    assert sorted(published) == sorted(ids)
    await db.dispose()


async def test_relay_keeps_each_keys_order_and_its_kafka_partition(
    databases: Databases, broker: LocalBroker
) -> None:
    db = await migrated(await databases.new("producer"))
    keys = [f"m-{k}" for k in range(7)]
    written: dict[str, list[str]] = {key: [] for key in keys}
    for txn in range(30):  # 30 transactions of 10 events, keys interleaved
        async with db.session() as session:
            items = [(registered(txn * 10 + i), keys[(txn + i) % 7]) for i in range(10)]
            event_ids = await add_events(session, items, source="/tests")
            for (_, key), event_id in zip(items, event_ids, strict=True):
                written[key].append(event_id)
    # Several relay batches, each spread over every partition in several record batches.
    relay = OutboxRelay(db, settings_for(ProducerSettings, broker, db.url, relay_batch_size=120))
    while await relay.publish_batch():
        pass
    await relay.close()
    records = await read_topic(broker, "community.members.v1", 301, timeout_s=5)
    assert len(records) == 300
    partitions = sorted({r.partition for r in records} | set(range(6)))
    published: dict[str, list[str]] = {key: [] for key in keys}
    by_offset = sorted(records, key=lambda r: (r.partition, r.offset))
    for record in by_offset:
        assert record.key is not None
        key = record.key.decode()
        # The partition Kafka's own default partitioner picks, so other producers agree.
        assert record.partition == DefaultPartitioner()(record.key, partitions, partitions)
        published[key].append(CloudEvent.from_json(record.value or b"").id)
    assert published == written


def test_murmur2_is_kafkas_hash() -> None:
    keys = [str(uuid.uuid4()).encode() for _ in range(500)]
    keys += [os.urandom(n) for n in range(40) for _ in range(5)]
    keys += [b"", "会员-42".encode()]
    for key in keys:
        assert murmur2(key) == aiokafka_murmur2(key)
        assert partition_for(key, [0, 1, 2]) == DefaultPartitioner()(key, [0, 1, 2], [0, 1, 2])


def test_event_ids_are_random_uuids_and_a_forked_child_makes_its_own() -> None:
    ids = [new_event_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    assert {uuid.UUID(i).version for i in ids} == {4}
    assert {uuid.UUID(i).variant for i in ids} == {uuid.RFC_4122}
    assert all(str(uuid.UUID(i)) == i for i in ids)  # canonical lower-case text
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report the next ids it would use, then leave at once
        os.close(read_end)
        os.write(write_end, ",".join(new_event_id() for _ in range(50)).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child_ids = set(pipe.read().decode().split(","))
    os.waitpid(pid, 0)
    parent_ids = {new_event_id() for _ in range(50)}
    assert len(child_ids) == 50
    assert not child_ids & parent_ids


async def test_housekeeping_purges_only_old_sent_events(databases: Databases) -> None:
    db = await migrated(await databases.new("producer"))
    relay = OutboxRelay(db, settings_for(ProducerSettings, _Offline(), db.url))  # type: ignore[arg-type]
    await write_events(db, 3)
    async with db.session() as session:
        await session.execute(
            update(outbox_table)
            .where(outbox_table.c.key == "m-0")
            .values(sent_at=datetime.now(UTC) - timedelta(days=5))
        )
        await session.execute(
            update(outbox_table)
            .where(outbox_table.c.key == "m-1")
            .values(sent_at=datetime.now(UTC))
        )
    assert await relay.purge_sent(timedelta(days=3)) == 1
    async with db.session() as session:
        keys = set((await session.execute(select(outbox_table.c.key))).scalars())
    assert keys == {"m-1", "m-2"}  # the recent one and the unsent one stay
    await db.dispose()


class _Offline:
    bootstrap_servers = "127.0.0.1:1"
