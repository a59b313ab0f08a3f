"""Outbox pipeline benchmark: raw aiokafka against add_event -> OutboxRelay -> EventConsumer.

One run, one broker (a LocalBroker started here unless ``--bootstrap`` is given):

1. raw: N realistic CloudEvents (MemberRegistered, ~480 bytes) produced with the relay's
   producer settings (acks=all, linger_ms=5) to a fresh 6-partition topic and consumed by
   a consumer in its own group that commits offsets per batch; msgs/s end to end, and the
   CPU per message of that produce + consume. Run before the first lane and again after
   each lane, each time on a fresh topic: a lane's ratio is against the mean of the raw
   runs either side of it (this VM's speed drifts by up to 2x within minutes).
2. ours, once per database backend (SQLite in a temp dir, plus PostgreSQL with
   ``--postgres``): the producer side writes events with ``add_event`` in its own
   transactions, ``OutboxRelay.run()`` publishes them, an ``EventConsumer`` applies them
   (inbox row + the analytics daily-growth upsert) in a second database. The handler is
   ``Batched``, as the services' hot paths are: one upsert per day per run of events.
   - latency phase: M events, one per transaction, at a steady rate;
     latency = consumer transaction committed - producer transaction committed.
   - throughput phase: N events, 100 per transaction, written as fast as one writer can;
     events/s from the first producer commit to the last consumer commit, and the CPU
     the process spent per event meanwhile (all threads, and the event loop's alone).
   - stages: N more events, the writer, the relay and the consumer each run alone, one
     after another, for the CPU per event each stage costs (not part of the ratio).

Everything (writer, relay, consumer) shares one event loop, as when a service runs its
relay and consumer in its own process; the broker is a separate process. The process
runs with a started service's garbage-collector settings (``shared.app.settled_heap``),
the raw baseline included.

    .venv/bin/python bench/outbox_pipeline.py
    .venv/bin/python bench/outbox_pipeline.py --postgres postgresql+asyncpg://postgres@127.0.0.1:5432/community_bench
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, cast

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic_settings import SettingsConfigDict
from report import BenchRows
from sqlalchemy import event as sa_event
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from services.analytics.models import DailyMemberGrowth
from shared.app import settled_heap
from shared.broker import LocalBroker
from shared.bus import ensure_topics, new_producer
from shared.consumer import Batched, ConsumedEvent, EventConsumer
from shared.db import Database, conflict_insert, inbox_table, outbox_table
from shared.events.contracts.members import MemberRegistered
from shared.events.envelope import CONTENT_TYPE, CloudEvent
from shared.events.registry import spec_of
from shared.migrations import upgrade
from shared.outbox import OutboxRelay, add_events
from shared.settings import ServiceSettings

REPO = Path(__file__).resolve().parents[1]
MIGRATIONS = REPO / "services" / "analytics" / "migrations"
MEMBERS_TOPIC = spec_of(
    MemberRegistered(member_id="x", nickname="x", channel="app", registered_at=datetime.now(UTC))
).topic.name
PARTITIONS = 6
TARGET_RATIO = 0.5
TARGET_P95_MS = 500.0
CHANNELS = ("app", "web", "wechat", "store", "partner")
REGIONS = ("CN-SH", "CN-BJ", "CN-GD", "CN-ZJ", None)

log = logging.getLogger("bench.outbox_pipeline")
_T0 = time.perf_counter()


def progress(message: str) -> None:
    print(f"[{time.perf_counter() - _T0:6.1f}s] {message}", file=sys.stderr, flush=True)


class BenchProducerSettings(ServiceSettings):
    service_name: ClassVar[str] = "benchproducer"
    model_config = SettingsConfigDict(
        env_prefix="BENCHPRODUCER_", extra="ignore", populate_by_name=True
    )


class BenchConsumerSettings(ServiceSettings):
    service_name: ClassVar[str] = "benchconsumer"
    model_config = SettingsConfigDict(
        env_prefix="BENCHCONSUMER_", extra="ignore", populate_by_name=True
    )


# ---------------------------------------------------------------- helpers


def member_data(i: int) -> MemberRegistered:
    return MemberRegistered(
        member_id=str(uuid.uuid4()),
        nickname=f"member-{i:07d}",
        channel=CHANNELS[i % len(CHANNELS)],
        region=REGIONS[i % len(REGIONS)],
        registered_at=datetime.now(UTC),
    )


def sample_envelope(i: int) -> CloudEvent:
    """The CloudEvent ``add_event`` would write for member ``i``."""
    data = member_data(i)
    spec = spec_of(data)
    return CloudEvent(
        source="bench/members",
        type=spec.name,
        subject=data.member_id,
        schemaversion=spec.version,
        partitionkey=data.member_id,
        data=data.model_dump(mode="json"),
    )


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    if len(values) == 1:
        only = values[0]
        return {"p50": only, "p95": only, "p99": only, "max": only}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": cuts[49], "p95": cuts[94], "p99": cuts[98], "max": max(values)}


def rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


async def cancel_task(task: asyncio.Task[Any] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await asyncio.wait_for(task, 10)


async def stop_consumer(consumer: EventConsumer, task: asyncio.Task[None] | None) -> None:
    """Let the consumer finish its batch and commit, then make sure its task is gone."""
    consumer.request_stop()
    if task is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(task), 10)
    await cancel_task(task)


@dataclass
class Phase:
    name: str
    ids: set[str] = field(default_factory=set)
    outstanding: int = 0
    sealed: bool = False
    first_commit: float | None = None
    last_commit: float | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def seal(self) -> None:
        self.sealed = True
        if self.outstanding == 0:
            self.done.set()


class Tracker:
    """Producer commit times and consumer commit times per event id (perf_counter)."""

    def __init__(self) -> None:
        self.commit_at: dict[str, float] = {}
        self.handled_at: dict[str, float] = {}
        self._phase_of: dict[str, Phase] = {}

    def committed(self, phase: Phase, ids: list[str], at: float) -> None:
        if phase.first_commit is None:
            phase.first_commit = at
        phase.last_commit = at
        for eid in ids:
            self.commit_at[eid] = at
            self._phase_of[eid] = phase
            phase.ids.add(eid)
        phase.outstanding += len(ids)

    def handled(self, eid: str, at: float) -> None:
        phase = self._phase_of.get(eid)
        if phase is None or eid in self.handled_at:
            return  # another run's event, or a redelivery the inbox absorbed
        self.handled_at[eid] = at
        phase.outstanding -= 1
        if phase.sealed and phase.outstanding == 0:
            phase.done.set()

    def latencies_ms(self, phase: Phase) -> list[float]:
        return [
            (self.handled_at[eid] - self.commit_at[eid]) * 1000
            for eid in phase.ids
            if eid in self.handled_at
        ]

    def last_handled(self, phase: Phase) -> float | None:
        times = [self.handled_at[eid] for eid in phase.ids if eid in self.handled_at]
        return max(times) if times else None


async def count_registrations(session: AsyncSession, events: list[ConsumedEvent]) -> None:
    """The analytics daily-growth upsert, batched: one statement per day in the run."""
    per_day = Counter(cast(MemberRegistered, e.data).registered_at.date() for e in events)
    for day, count in per_day.items():
        stmt = conflict_insert(session, DailyMemberGrowth).values(day=day, registered=count)
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=["day"], set_={"registered": DailyMemberGrowth.registered + count}
            )
        )
    session.info.setdefault("bench_event_ids", []).extend(e.id for e in events)


# A run of consecutive member.registered events per call, as the services' hot paths use.
ON_MEMBERS_REGISTERED = Batched(count_registrations)


# ---------------------------------------------------------------- raw baseline


async def wait_for_assignment(consumer: AIOKafkaConsumer, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not consumer.assignment():
        if time.monotonic() > deadline:
            raise TimeoutError("raw consumer got no partitions")
        await asyncio.sleep(0.02)


async def run_raw(settings: ServiceSettings, n: int, run_id: str) -> dict[str, Any]:
    topic = f"bench.raw.{run_id}"
    await ensure_topics(settings, [topic], partitions=PARTITIONS)
    messages = []
    for i in range(n):
        envelope = sample_envelope(i)
        messages.append((envelope.subject or "", envelope.to_json()))
    avg_size = sum(len(value) for _, value in messages) / max(1, n)

    producer = new_producer(settings, client_id=f"bench-raw-{run_id}")
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=f"bench-raw-{run_id}",
        client_id=f"bench-raw-{run_id}-consumer",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=500,
        metadata_max_age_ms=5000,
    )
    received = 0
    last_at = 0.0
    all_in = asyncio.Event()

    async def consume() -> None:
        nonlocal received, last_at
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=500)
            for tp, records in batches.items():
                received += len(records)
                await consumer.commit({tp: records[-1].offset + 1})
            if batches:
                last_at = time.perf_counter()
            if received >= n:
                all_in.set()

    consume_task: asyncio.Task[None] | None = None
    try:
        await producer.start()
        await consumer.start()
        consume_task = asyncio.create_task(consume())
        await wait_for_assignment(consumer)
        # Warm the producer's metadata for the topic before timing.
        await producer.partitions_for(topic)
        headers = [("content-type", CONTENT_TYPE.encode())]
        cpu_start = Cpu.now()
        start = time.perf_counter()
        futures = [
            await producer.send(topic, value=value, key=key.encode(), headers=headers)
            for key, value in messages
        ]
        await asyncio.gather(*futures)
        produced_at = time.perf_counter()
        waiter = asyncio.create_task(all_in.wait())
        done, _ = await asyncio.wait(
            {waiter, consume_task}, timeout=60, return_when=asyncio.FIRST_COMPLETED
        )
        if waiter not in done:
            waiter.cancel()
            if consume_task in done:
                consume_task.result()  # re-raise the consumer's error
            raise TimeoutError(f"raw consumer received {received}/{n} messages in 60s")
        cpu = Cpu.now() - cpu_start
    finally:
        await cancel_task(consume_task)
        with contextlib.suppress(Exception):
            await consumer.stop()
        with contextlib.suppress(Exception):
            await producer.stop()
    elapsed = last_at - start
    return {
        "messages": n,
        "avg_bytes": round(avg_size),
        "produce_s": round(produced_at - start, 3),
        "elapsed_s": round(elapsed, 3),
        "produce_msgs_per_s": round(n / (produced_at - start)),
        "msgs_per_s": round(n / elapsed),
        "cpu_us_per_msg": cpu.us_per(n)["process"],
    }


# ---------------------------------------------------------------- databases


async def prepare_postgres(url: str) -> None:
    """Create the database if missing, migrate it, empty its platform and rollup tables."""
    parsed = make_url(url)
    name = parsed.database
    if not name:
        raise ValueError(f"--postgres URL names no database: {url}")
    admin = create_async_engine(
        parsed.set(database="postgres").render_as_string(hide_password=False),
        isolation_level="AUTOCOMMIT",
    )
    try:
        async with admin.connect() as conn:
            exists = await conn.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            )
            if not exists:
                quoted = name.replace('"', '""')
                await conn.execute(text(f'CREATE DATABASE "{quoted}"'))
    finally:
        await admin.dispose()


async def migrate_fresh(db: Database) -> None:
    await upgrade(db, MIGRATIONS)
    if not db.is_sqlite:
        async with db.engine.begin() as conn:
            await conn.execute(text("TRUNCATE outbox, inbox, daily_member_growth"))


async def seek_group_to_end(bootstrap: str, group: str, topic: str) -> None:
    """Commit the topic's end offsets for ``group`` so it skips earlier runs' events."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        await consumer.topics()
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.commit(dict(ends))
    finally:
        await consumer.stop()


# ---------------------------------------------------------------- our pipeline


async def write_transaction(
    db: Database, tracker: Tracker, phase: Phase, members: list[MemberRegistered]
) -> None:
    async with db.session() as session:
        items = [(data, data.member_id) for data in members]
        event_ids = await add_events(session, items, source="bench")
        # Recorded as the commit starts, not after it: the commit wakes the relay, and on
        # a loaded machine the consumer can apply an event before this task resumes.
        # Latencies are thus counted from just before the commit, never understated.
        tracker.committed(phase, event_ids, time.perf_counter())


async def wait_phase(phase: Phase, timeout_s: float, *watched: asyncio.Task[Any]) -> bool:
    """Wait until every event of the phase is handled; False on timeout.

    Fails fast if a watched background task (relay, consumer) has died.
    """
    phase.seal()
    waiter = asyncio.create_task(phase.done.wait())
    try:
        done, _ = await asyncio.wait(
            {waiter, *watched}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        for task in watched:
            if task in done:
                task.result()
                raise RuntimeError(f"{task.get_name()} stopped during {phase.name}")
        return waiter in done
    finally:
        waiter.cancel()


async def run_ours(
    backend: str,
    producer_url: str,
    consumer_url: str,
    bootstrap: str,
    args: argparse.Namespace,
    run_id: str,
) -> dict[str, Any]:
    common = {
        "kafka_bootstrap_servers": bootstrap,
        "relay_poll_interval_s": args.relay_poll,
        "consumer_retry_backoff_s": 0.01,
        "log_json": False,
    }
    producer_settings = BenchProducerSettings.model_validate(
        {**common, "database_url": producer_url}
    )
    consumer_settings = BenchConsumerSettings.model_validate(
        {**common, "database_url": consumer_url}
    )
    group = f"benchconsumer-{backend}-{run_id}"
    tracker = Tracker()
    result: dict[str, Any] = {"backend": backend, "group": group}

    async with AsyncExitStack() as stack:
        producer_db = Database(producer_url)
        stack.push_async_callback(producer_db.dispose)
        consumer_db = Database(consumer_url)
        stack.push_async_callback(consumer_db.dispose)
        await migrate_fresh(producer_db)
        await migrate_fresh(consumer_db)
        progress(f"{backend}: databases migrated")

        def after_consumer_commit(session: Any) -> None:
            at = time.perf_counter()
            for eid in session.info.pop("bench_event_ids", ()):
                tracker.handled(eid, at)

        # AsyncSession wraps a sync Session; listen on its class, remove at the end.
        session_class = consumer_db.sessionmaker.kw.get("sync_session_class", Session)
        sa_event.listen(session_class, "after_commit", after_consumer_commit)
        stack.callback(sa_event.remove, session_class, "after_commit", after_consumer_commit)

        await ensure_topics(producer_settings, [MEMBERS_TOPIC])
        await seek_group_to_end(bootstrap, group, MEMBERS_TOPIC)

        relay = OutboxRelay(producer_db, producer_settings)
        stack.push_async_callback(relay.close)
        consumer = EventConsumer(
            consumer_db,
            consumer_settings,
            {"member.registered": ON_MEMBERS_REGISTERED},
            group=group,
        )
        stack.push_async_callback(consumer.close)
        relay_task = asyncio.create_task(relay.run(), name="relay")
        stack.push_async_callback(cancel_task, relay_task)
        consumer_task = asyncio.create_task(consumer.run(), name="consumer")
        stack.push_async_callback(cancel_task, consumer_task)
        watched = (relay_task, consumer_task)

        # Warm-up: producer connection, consumer group join, first fetches.
        warmup = Phase("warmup")
        for i in range(20):
            await write_transaction(producer_db, tracker, warmup, [member_data(i)])
        if not await wait_phase(warmup, 60, *watched):
            raise TimeoutError(f"{backend}: warm-up events not handled in 60s")
        await asyncio.sleep(0.5)

        progress(f"{backend}: warm-up done")
        # Latency phase: one event per transaction at a steady rate.
        latency = Phase("latency")
        m, rate = args.latency_events, args.latency_rate
        start = time.perf_counter()
        for i in range(m):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await write_transaction(producer_db, tracker, latency, [member_data(1_000_000 + i)])
        written_at = time.perf_counter()
        complete = await wait_phase(latency, args.phase_timeout, *watched)
        lat = percentiles(tracker.latencies_ms(latency))
        result["latency"] = {
            "events": m,
            "handled": m - latency.outstanding,
            "complete": complete,
            "offered_rate": rate,
            "achieved_write_rate": round(m / (written_at - start)),
            **{k: rounded(v) for k, v in lat.items()},
        }
        if not complete:
            missed = await unhandled_breakdown(producer_db, consumer_db, tracker, latency)
            result["latency"].update(missed)
        await asyncio.sleep(0.5)

        progress(f"{backend}: latency {result['latency']}")
        # Throughput phase: N events, `batch` per transaction, one writer flat out.
        bulk = Phase("throughput")
        n, batch = args.events, args.batch
        # The domain payloads exist before timing, as raw's messages do; making the
        # envelopes, serialising and inserting them is timed.
        members = [member_data(2_000_000 + i) for i in range(n)]
        wall_start = datetime.now(UTC)
        cpu_start = Cpu.now()
        perf_start = time.perf_counter()
        for first in range(0, n, batch):
            await write_transaction(producer_db, tracker, bulk, members[first : first + batch])
        # Cut off phase_timeout after the first write; the rate counts what was handled.
        remaining = max(5.0, perf_start + args.phase_timeout - time.perf_counter())
        complete = await wait_phase(bulk, remaining, *watched)
        cpu = Cpu.now() - cpu_start
        last = tracker.last_handled(bulk)
        assert bulk.first_commit is not None
        assert bulk.last_commit is not None
        relay_drained_s = await relay_drain_time(producer_db, wall_start, perf_start, bulk)
        elapsed = (last - bulk.first_commit) if last is not None else None
        handled = n - bulk.outstanding
        lat = percentiles(tracker.latencies_ms(bulk))
        result["throughput"] = {
            "events": n,
            "batch": batch,
            "handled": handled,
            "complete": complete,
            "write_s": round(bulk.last_commit - bulk.first_commit, 3),
            "relay_drained_s": rounded(relay_drained_s, 3),
            "consumer_drained_s": rounded(elapsed, 3),
            "events_per_s": round(handled / elapsed) if elapsed else None,
            "cpu_us_per_event": cpu.us_per(handled)["process"] if handled else None,
            "loop_cpu_us_per_event": cpu.us_per(handled)["loop"] if handled else None,
            "latency_under_load_ms": {k: rounded(v) for k, v in lat.items()},
        }
        if not complete:
            missed = await unhandled_breakdown(producer_db, consumer_db, tracker, bulk)
            result["throughput"].update(missed)
        progress(f"{backend}: throughput {result['throughput']}")

        # Stages one after another, for the CPU each costs alone.
        await stop_consumer(consumer, consumer_task)
        await cancel_task(relay_task)
        stages = StageRun(producer_db, consumer_db, producer_settings, consumer_settings, tracker)
        stack.push_async_callback(stages.close)
        result["stages"] = await stages.run(bootstrap, f"{group}-stages", n, batch, args)
    progress(f"{backend}: stages {result['stages']}")
    return result


class StageRun:
    """Writer, relay and consumer run one after another over N fresh events, so the process
    CPU each spends is its own (the broker and the database server are other processes).

    The relay and the consumer are warmed first (producer started, group joined): what is
    measured is the per-event cost, not start-up.
    """

    def __init__(
        self,
        producer_db: Database,
        consumer_db: Database,
        producer_settings: ServiceSettings,
        consumer_settings: ServiceSettings,
        tracker: Tracker,
    ) -> None:
        self.producer_db = producer_db
        self.consumer_db = consumer_db
        self.consumer_settings = consumer_settings
        self.tracker = tracker
        self.relay = OutboxRelay(producer_db, producer_settings)
        self.consumer: EventConsumer | None = None
        self.consumer_task: asyncio.Task[None] | None = None

    async def close(self) -> None:
        if self.consumer is not None:
            await stop_consumer(self.consumer, self.consumer_task)
            await self.consumer.close()
        await self.relay.close()

    async def drain_relay(self) -> int:
        sent = 0
        while published := await self.relay.publish_batch():
            sent += published
        return sent

    async def run(
        self, bootstrap: str, group: str, n: int, batch: int, args: argparse.Namespace
    ) -> dict[str, Any]:
        warmup = Phase("stages-warmup")
        await write_transaction(self.producer_db, self.tracker, warmup, [member_data(3_000_000)])
        await self.drain_relay()
        await seek_group_to_end(bootstrap, group, MEMBERS_TOPIC)
        self.consumer = EventConsumer(
            self.consumer_db,
            self.consumer_settings,
            {"member.registered": ON_MEMBERS_REGISTERED},
            group=group,
        )
        consumer_started: list[Cpu] = []
        handle_batch = self.consumer.handle_batch

        async def timed_handle_batch(records: list[Any]) -> None:
            if not consumer_started:
                consumer_started.append(Cpu.now())
            await handle_batch(records)

        self.consumer.handle_batch = timed_handle_batch  # type: ignore[method-assign]

        phase = Phase("stages")
        members = [member_data(3_000_001 + i) for i in range(n)]
        started = Cpu.now()
        for first in range(0, n, batch):
            await write_transaction(
                self.producer_db, self.tracker, phase, members[first : first + batch]
            )
        writer = Cpu.now() - started

        started = Cpu.now()
        sent = await self.drain_relay()
        relay = Cpu.now() - started

        # The consumer's clock starts at its first batch: joining the group is start-up.
        self.consumer_task = asyncio.create_task(self.consumer.run(), name="stage-consumer")
        complete = await wait_phase(phase, max(args.phase_timeout, 60.0), self.consumer_task)
        consumer = Cpu.now() - consumer_started[0] if consumer_started else None
        handled = n - phase.outstanding
        stages: dict[str, Any] = {"events": n, "complete": complete}
        for name, spent, count in (
            ("writer", writer, n),
            ("relay", relay, sent),
            ("consumer", consumer, handled),
        ):
            stages[f"{name}_us"] = spent.us_per(count)["process"] if spent and count else None
            stages[f"{name}_loop_us"] = spent.us_per(count)["loop"] if spent and count else None
        for kind in ("", "_loop"):
            parts = [stages[f"{name}{kind}_us"] for name in ("writer", "relay", "consumer")]
            total = round(sum(parts), 1) if all(p is not None for p in parts) else None
            stages[f"total{kind}_us"] = total
        return stages


@dataclass(frozen=True)
class Cpu:
    """CPU seconds of the whole process (the SQLite driver's thread included) and of the
    event loop's thread alone (what caps one service process's throughput)."""

    process_s: float
    loop_s: float

    @classmethod
    def now(cls) -> Cpu:
        return cls(time.process_time(), time.thread_time())

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(self.process_s - other.process_s, self.loop_s - other.loop_s)

    def us_per(self, count: int) -> dict[str, float]:
        return {
            "process": round(self.process_s / count * 1e6, 1),
            "loop": round(self.loop_s / count * 1e6, 1),
        }


async def unhandled_breakdown(
    producer_db: Database, consumer_db: Database, tracker: Tracker, phase: Phase
) -> dict[str, int]:
    """For events never seen handled: published or not, and in the consumer's inbox or not.

    One in the inbox was applied after all, so the tracker missed it: a bench fault, not a loss.
    """
    missing = [eid for eid in phase.ids if eid not in tracker.handled_at]
    sent = in_inbox = 0
    for first in range(0, len(missing), 500):
        chunk = missing[first : first + 500]
        async with producer_db.session() as session:
            sent += (
                await session.scalar(
                    select(func.count())
                    .select_from(outbox_table)
                    .where(outbox_table.c.event_id.in_(chunk), outbox_table.c.sent_at.is_not(None))
                )
                or 0
            )
        async with consumer_db.session() as session:
            in_inbox += (
                await session.scalar(
                    select(func.count())
                    .select_from(inbox_table)
                    .where(inbox_table.c.event_id.in_(chunk))
                )
                or 0
            )
    return {
        "unhandled_published": sent,
        "unhandled_unpublished": len(missing) - sent,
        "unhandled_in_consumer_inbox": in_inbox,
    }


async def relay_drain_time(
    db: Database, wall_start: datetime, perf_start: float, phase: Phase
) -> float | None:
    """Seconds from the phase's first commit until the relay marked its last row sent."""
    async with db.session() as session:
        last_sent = await session.scalar(
            select(func.max(outbox_table.c.sent_at)).where(
                outbox_table.c.created_at >= wall_start - timedelta(milliseconds=1)
            )
        )
    if last_sent is None or phase.first_commit is None:
        return None
    if last_sent.tzinfo is None:
        last_sent = last_sent.replace(tzinfo=UTC)
    first_commit_wall = wall_start + timedelta(seconds=phase.first_commit - perf_start)
    return (last_sent - first_commit_wall).total_seconds()


# ---------------------------------------------------------------- report


def report(raws: list[dict[str, Any]], ours: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    first = raws[0]
    console.print(
        f"raw baseline: {first['messages']} msgs x {first['avg_bytes']} B, "
        f"{PARTITIONS} partitions, acks=all linger_ms=5; {len(raws)} runs, end to end "
        + ", ".join(f"{raw['msgs_per_s']}" for raw in raws)
        + " msgs/s, CPU "
        + ", ".join(f"{raw['cpu_us_per_msg']}" for raw in raws)
        + " us/msg"
    )
    table = Table(title="Outbox pipeline vs raw aiokafka (same broker)")
    for column in ("metric", *(r["backend"] for r in ours), "target"):
        table.add_column(column, justify="right" if column != "metric" else "left")

    def row(label: str, getter: Callable[[dict[str, Any]], Any], target: str = "") -> None:
        table.add_row(label, *(str(getter(r)) for r in ours), target)

    row(
        "raw msgs/s (before, after)",
        lambda r: f"{r['raw_msgs_per_s']} ({', '.join(map(str, r['raw_runs']))})",
    )
    row("ours events/s", lambda r: r["throughput"]["events_per_s"])
    row("ratio ours/raw", lambda r: r["ratio"], f">= {TARGET_RATIO}")
    row("latency p50 ms", lambda r: r["latency"]["p50"])
    row("latency p95 ms", lambda r: r["latency"]["p95"], f"< {TARGET_P95_MS:.0f}")
    row("latency p99 ms", lambda r: r["latency"]["p99"])
    row("latency max ms", lambda r: r["latency"]["max"])
    row("latency handled", lambda r: f"{r['latency']['handled']}/{r['latency']['events']}")
    row(
        "latency events (rate/s)",
        lambda r: f"{r['latency']['events']} ({r['latency']['offered_rate']:g})",
    )
    row("N (per txn)", lambda r: f"{r['throughput']['events']} ({r['throughput']['batch']})")
    row("  handled / N", lambda r: f"{r['throughput']['handled']}/{r['throughput']['events']}")
    row("  write done s", lambda r: r["throughput"]["write_s"])
    row("  relay drained s", lambda r: r["throughput"]["relay_drained_s"])
    row("  consumer drained s", lambda r: r["throughput"]["consumer_drained_s"])
    row("  load latency p50 ms", lambda r: r["throughput"]["latency_under_load_ms"]["p50"])
    row("  load latency p95 ms", lambda r: r["throughput"]["latency_under_load_ms"]["p95"])
    row("  CPU us/event: process", lambda r: r["throughput"]["cpu_us_per_event"])
    row("  CPU us/event: loop", lambda r: r["throughput"]["loop_cpu_us_per_event"])
    row("stages alone, CPU us/event", lambda r: f"N={r['stages']['events']}")

    def stage(name: str) -> Callable[[dict[str, Any]], str]:
        return lambda r: f"{r['stages'][f'{name}_us']} ({r['stages'][f'{name}_loop_us']} loop)"

    row("  writer (add_events)", stage("writer"))
    row("  relay (publish_batch)", stage("relay"))
    row("  consumer (run)", stage("consumer"))
    raw_cpu = statistics.mean(raw["cpu_us_per_msg"] for raw in raws)
    row("  sum", stage("total"), f"raw {raw_cpu:.1f}")
    row("meets targets", lambda r: "yes" if r["meets_targets"] else "no")
    console.print(table)
    console.print(
        f"loop={meta['loop']} relay_poll_interval_s={meta['relay_poll']} "
        f"broker={meta['broker']} total {meta['total_s']} s"
    )


# ---------------------------------------------------------------- main


@contextlib.contextmanager
def broker_for(bootstrap: str | None) -> Iterator[str]:
    if bootstrap:
        yield bootstrap
        return
    broker = LocalBroker()
    broker.start()
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


async def bench(args: argparse.Namespace, bootstrap: str) -> dict[str, Any]:
    """Raw before the first lane, between lanes and after the last: each lane's ratio is
    against the mean of the raw runs either side of it, so a machine that speeds up or
    slows down during the run moves the lane and its baseline together."""
    run_id = uuid.uuid4().hex[:8]
    settings = BenchProducerSettings.model_validate(
        {"kafka_bootstrap_servers": bootstrap, "database_url": "sqlite+aiosqlite://"}
    )
    raws: list[dict[str, Any]] = []

    async def raw_run() -> dict[str, Any]:
        progress(f"raw baseline {len(raws) + 1}, {args.events} messages")
        raw = await run_raw(settings, args.events, f"{run_id}{len(raws)}")
        progress(f"raw: {raw}")
        raws.append(raw)
        return raw

    progress(f"broker {bootstrap}")
    before = await raw_run()
    ours: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-outbox-") as tmp:
        lanes: list[tuple[str, str, str]] = [
            (
                "sqlite",
                f"sqlite+aiosqlite:///{Path(tmp) / 'producer.db'}",
                f"sqlite+aiosqlite:///{Path(tmp) / 'consumer.db'}",
            )
        ]
        if args.postgres:
            consumer_pg = make_url(args.postgres)
            consumer_pg = consumer_pg.set(database=f"{consumer_pg.database}_consumer")
            consumer_pg_url = consumer_pg.render_as_string(hide_password=False)
            await prepare_postgres(args.postgres)
            await prepare_postgres(consumer_pg_url)
            lanes.append(("postgresql", args.postgres, consumer_pg_url))
        for backend, producer_url, consumer_url in lanes:
            result = await run_ours(backend, producer_url, consumer_url, bootstrap, args, run_id)
            after = await raw_run()
            baseline = round(statistics.mean([before["msgs_per_s"], after["msgs_per_s"]]))
            result["raw_msgs_per_s"] = baseline
            result["raw_runs"] = [before["msgs_per_s"], after["msgs_per_s"]]
            eps = result["throughput"]["events_per_s"] or 0
            result["ratio"] = round(eps / baseline, 3)
            p95 = result["latency"]["p95"]
            result["meets_targets"] = bool(
                result["ratio"] >= TARGET_RATIO
                and p95 is not None
                and p95 < TARGET_P95_MS
                and result["latency"]["complete"]
                and result["throughput"]["complete"]
            )
            ours.append(result)
            before = after
    return {"raws": raws, "ours": ours}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Outbox pipeline benchmark: raw aiokafka vs add_event -> relay -> consumer."
    )
    parser.add_argument("--events", type=int, default=20000, help="N (raw and throughput phase)")
    parser.add_argument("--latency-events", type=int, default=2000, help="M, latency phase")
    parser.add_argument("--latency-rate", type=float, default=100.0, help="events/s, latency phase")
    parser.add_argument(
        "--batch", type=int, default=100, help="events per transaction, throughput phase"
    )
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="also run on PostgreSQL, e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/bench; "
        "the database and <name>_consumer are created if missing and their outbox, inbox "
        "and daily_member_growth tables are emptied",
    )
    parser.add_argument("--bootstrap", metavar="SERVERS", help="use this broker, not a LocalBroker")
    parser.add_argument("--relay-poll", type=float, default=0.05, help="relay_poll_interval_s")
    parser.add_argument(
        "--phase-timeout",
        type=float,
        default=40.0,
        help="seconds: the throughput phase is cut off this long after its first write, "
        "the latency phase this long after its last write",
    )
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    args = parser.parse_args(argv)
    if args.events < 1 or args.latency_events < 1 or args.batch < 1 or args.latency_rate <= 0:
        parser.error("--events, --latency-events, --batch and --latency-rate must be positive")
    return args


def run_loop(main: Coroutine[Any, Any, Any], loop: str) -> Any:
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if loop in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if loop == "uvloop":
                raise
        else:
            factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    loop_name = args.loop
    if loop_name == "auto":
        try:
            import uvloop  # noqa: F401

            loop_name = "uvloop"
        except ImportError:
            loop_name = "asyncio"
    # SIGTERM unwinds like Ctrl-C, so the finally blocks stop the tasks and the broker.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.perf_counter()
    with broker_for(args.bootstrap) as bootstrap, settled_heap():
        results = run_loop(bench(args, bootstrap), args.loop)
    meta = {
        "loop": loop_name,
        "relay_poll": args.relay_poll,
        "broker": "external" if args.bootstrap else "LocalBroker (tansu memory)",
        "total_s": round(time.perf_counter() - started, 1),
    }
    report(results["raws"], results["ours"], meta)
    summary = {
        "n": args.events,
        "latency_events": args.latency_events,
        "raw_runs": results["raws"],
        "targets": {"ratio_min": TARGET_RATIO, "p95_ms_max": TARGET_P95_MS},
        "meta": meta,
        "results": [
            {
                "backend": r["backend"],
                "events_per_s": r["throughput"]["events_per_s"],
                "raw_msgs_per_s": r["raw_msgs_per_s"],
                "raw_runs": r["raw_runs"],
                "ratio": r["ratio"],
                "p50_ms": r["latency"]["p50"],
                "p95_ms": r["latency"]["p95"],
                "p99_ms": r["latency"]["p99"],
                "meets_targets": r["meets_targets"],
                "latency": r["latency"],
                "throughput": r["throughput"],
                "stages": r["stages"],
            }
            for r in results["ours"]
        ],
    }
    print("BENCH_JSON " + json.dumps(summary, separators=(",", ":")))
    rows = BenchRows(__file__)
    for r in results["ours"]:
        lat, thr = r["latency"], r["throughput"]
        rows.add(
            lane=r["backend"],
            what=f"add_event -> relay -> Tansu -> consumer, N={thr['events']} "
            f"({thr['batch']}/txn); latency at {lat['offered_rate']:g} ev/s, 1/txn",
            figure=thr["events_per_s"],
            unit="events/s",
            baseline="raw aiokafka produce + consume, same broker, mean of the runs "
            f"before and after this lane ({', '.join(map(str, r['raw_runs']))})",
            baseline_figure=r["raw_msgs_per_s"],
            baseline_unit="msgs/s",
            ratio=r["ratio"],
            p50_ms=lat["p50"],
            p95_ms=lat["p95"],
            p99_ms=lat["p99"],
            target=f">= {TARGET_RATIO}x raw, p95 < {TARGET_P95_MS:.0f} ms",
            met=r["meets_targets"],
            note=f"handled {thr['handled']}/{thr['events']} (throughput), "
            f"{lat['handled']}/{lat['events']} (latency)",
        )
    rows.emit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
