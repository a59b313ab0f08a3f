"""The idempotent consumer: inbox dedupe, commit after processing, bounded retries, dead letters.

One consumer group per service. Each event is applied in one database
transaction together with its inbox row, and the Kafka offset is committed only
after that transaction (at most once a second while events flow); a redelivered
event finds its inbox row and has no second effect. A message that keeps failing
goes to the service's dead-letter topic with the error attached, and the
partition moves on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.errors import CommitFailedError, KafkaError
from pydantic import ValidationError
from sqlalchemy import JSON, Executable, bindparam, func, literal_column, select, true
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from shared.bus import (
    BROKER_PROBE_INTERVAL_S,
    broker_down,
    ensure_topics,
    new_producer,
    really_cancelled,
    stop_quietly,
)
from shared.db import Database, conflict_insert, dialect_of, inbox_table, utcnow
from shared.events.envelope import CloudEvent
from shared.events.registry import EventData, lookup
from shared.events.topics import dlq_topic
from shared.observability import (
    CONSUMED,
    CONSUMER_LAG,
    DLQ_MESSAGES,
    event_id_var,
    new_traceparent,
    traceparent_var,
)
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)

DLQ_HEADER_PREFIX = "dlq-"
# Records applied in one transaction at most; larger runs amortise the inbox insert
# and the offset commit, smaller ones bound the work redone after a failure.
MAX_BATCH_RECORDS = 500
# Offsets are committed at most this often while events keep coming, and at once when
# the consumer falls idle, stops, loses partitions or dead-letters. An offset commit is
# a broker round trip; committing every fetch cost as much as the fetch. Offsets only
# ever lag what the database holds, so a crash redelivers at most this much, which the
# inbox absorbs.
OFFSET_COMMIT_INTERVAL_S = 1.0
# A consumer that has fetched nothing for IDLE_AFTER_S asks the broker to park its fetches
# this long instead of ``consumer_fetch_max_wait_ms``, until records arrive again. Every
# service polls every topic it reads, and Tansu answers a parked fetch only when the wait
# runs out: at 50 ms an idle platform spent a quarter of a core polling (the broker most
# of it). The price is the first event after a quiet spell waiting up to this long.
IDLE_AFTER_S = 5.0
IDLE_FETCH_MAX_WAIT_MS = 500


@dataclass(frozen=True, slots=True)
class ConsumedEvent:
    envelope: CloudEvent
    data: Any
    topic: str
    partition: int
    offset: int

    @property
    def id(self) -> str:
        return self.envelope.id


Handler = Callable[[AsyncSession, ConsumedEvent], Awaitable[None]]
BatchFn = Callable[[AsyncSession, list[ConsumedEvent]], Awaitable[None]]


@dataclass(frozen=True)
class Batched:
    """A handler that takes a run of consecutive events of its types in one call.

    For hot paths whose effect can be written with one statement per run rather
    than several per event (the rewards ledger paying likes). The run is applied
    in the batch's transaction, so it is all-or-nothing like every other handler;
    a run that fails is retried event by event, each as a run of one. Events a
    batched handler emits continue the trace of the run's first event.
    """

    run: BatchFn


Subscription = Handler | Batched

# Errors that say "not now" rather than "never": retried without limit instead
# of dead-lettering a good message because the database blinked.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    ConnectionError,
    TimeoutError,
)


class PoisonMessage(Exception):
    """The message can never be processed as it is (not a CloudEvent, wrong data shape)."""


async def claim_in_inbox(session: AsyncSession, consumer: str, event_id: str, type_: str) -> bool:
    """Record the event as processed by ``consumer``; False when it already was."""
    dialect = dialect_of(session)
    stmt = _CLAIM_ONE.get(dialect)
    if stmt is None:
        # Built once per dialect: building it and its cache key cost more than running it.
        stmt = _CLAIM_ONE[dialect] = (
            conflict_insert(session, inbox_table)
            .on_conflict_do_nothing(index_elements=["consumer", "event_id"])
            .returning(inbox_table.c.event_id)
        )
    row = {"consumer": consumer, "event_id": event_id, "type": type_, "processed_at": utcnow()}
    return (await session.execute(stmt, row)).first() is not None


async def claim_many_in_inbox(
    session: AsyncSession, consumer: str, events: list[tuple[str, str]]
) -> set[str]:
    """Record many events as processed in one statement; returns the ids not seen before."""
    claims = dict(events)  # an id twice in one statement is claimed once
    if len(claims) == 1:
        [(event_id, type_)] = claims.items()
        return {event_id} if await claim_in_inbox(session, consumer, event_id, type_) else set()
    dialect = dialect_of(session)
    stmt = _CLAIM_MANY.get(dialect)
    if stmt is None:
        stmt = _CLAIM_MANY[dialect] = _claim_many_statement(dialect)
    params = {"consumer": consumer, "claims": list(claims.items()), "now": utcnow()}
    return set((await session.execute(stmt, params)).scalars().all())


def _claim_many_statement(dialect: str) -> Executable:
    """The inbox INSERT of a whole batch, its ``[event id, type]`` pairs bound as one JSON
    array and read back by the database (``json_array_elements`` on PostgreSQL,
    ``json_each`` on SQLite).

    One parameter, not one set per row: an executemany with RETURNING is rendered as a
    VALUES list, built and bound row by row in Python for every batch (a 500-event batch
    took 7 ms of CPU that way on PostgreSQL, 4.5 ms this way). For one event the plain
    INSERT is cheaper (``claim_in_inbox``).
    """
    claims = bindparam("claims", type_=JSON)
    if dialect == "postgresql":
        pairs = func.json_array_elements(claims).table_valued("value").render_derived()
        stmt: pg.Insert | sqlite.Insert = pg.insert(inbox_table)
    else:
        pairs = func.json_each(claims).table_valued("value")
        stmt = sqlite.insert(inbox_table)
    pair = pairs.c.value
    source = select(
        bindparam("consumer", type_=inbox_table.c.consumer.type),
        pair.op("->>")(literal_column("0")),
        pair.op("->>")(literal_column("1")),
        bindparam("now", type_=inbox_table.c.processed_at.type),
    ).where(true())  # without a WHERE, SQLite reads ON CONFLICT as a join's ON
    return (
        stmt.from_select(["consumer", "event_id", "type", "processed_at"], source)
        .on_conflict_do_nothing(index_elements=["consumer", "event_id"])
        .returning(inbox_table.c.event_id)
    )


_CLAIM_ONE: dict[str, Executable] = {}
_CLAIM_MANY: dict[str, Executable] = {}


@contextlib.contextmanager
def event_context(envelope: CloudEvent) -> Iterator[None]:
    """Logs name the event; events a handler emits continue the trace of this one."""
    event_token = event_id_var.set(envelope.id)
    trace_token = traceparent_var.set(new_traceparent(envelope.traceparent))
    try:
        yield
    finally:
        traceparent_var.reset(trace_token)
        event_id_var.reset(event_token)


def parse_envelope(record: ConsumerRecord[bytes, bytes]) -> CloudEvent:
    try:
        return CloudEvent.from_json(record.value or b"")
    except ValueError as exc:
        raise PoisonMessage(f"not a CloudEvent: {exc}") from exc


def parse_data(envelope: CloudEvent) -> EventData:
    try:
        return lookup(envelope.type).model.model_validate(envelope.data)
    except (ValidationError, LookupError) as exc:
        raise PoisonMessage(f"{envelope.type} data does not match its contract: {exc}") from exc


def consecutive_runs(
    events: list[tuple[Subscription, ConsumedEvent]],
) -> Iterator[tuple[Subscription, list[ConsumedEvent]]]:
    """Group neighbours that share a batched handler; everything else comes one at a time.

    Only neighbours are grouped, so effects still happen in the order of the partition.
    """
    run: list[ConsumedEvent] = []
    current: Subscription | None = None
    for handler, event in events:
        if run and (handler is not current or not isinstance(handler, Batched)):
            assert current is not None
            yield current, run
            run = []
        current = handler
        run.append(event)
    if run:
        assert current is not None
        yield current, run


async def run_handler(
    session: AsyncSession, handler: Subscription, events: list[ConsumedEvent]
) -> None:
    if isinstance(handler, Batched):
        with event_context(events[0].envelope):
            await handler.run(session, events)
        return
    for event in events:
        with event_context(event.envelope):
            await handler(session, event)


class _CommitBeforeRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Commits what was applied on partitions before another member takes them over."""

    def __init__(self, owner: EventConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        try:
            await self.owner.commit_offsets(revoked)
        except Exception as exc:  # the new owner redelivers; the inbox dedupes
            log.warning("consumer %s: commit before revoke failed: %r", self.owner.group, exc)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        return None


class EventConsumer:
    """Runs one consumer group over the topics its subscriptions need."""

    def __init__(
        self,
        db: Database,
        settings: ServiceSettings,
        subscriptions: Mapping[str, Subscription],
        *,
        group: str | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.group = group or settings.service_name
        self.subscriptions = dict(subscriptions)
        self.topics = sorted({lookup(name).topic.name for name in self.subscriptions})
        self.dlq_topic = dlq_topic(self.group)
        self._consumer: AIOKafkaConsumer | None = None
        self._dlq_producer: AIOKafkaProducer | None = None
        self.processed = 0
        self.dead_lettered = 0
        self._stopping = False
        # Next offset per partition, applied in the database but not yet committed to Kafka.
        self._uncommitted: dict[TopicPartition, int] = {}
        self._committed_at = 0.0
        self.idle_after_s = IDLE_AFTER_S

    def request_stop(self) -> None:
        """Finish the batch in hand, commit its offsets, then return from ``run``.

        Cancelling instead could land between the database commit and the offset
        commit: harmless (the inbox dedupes the redelivery) but wasteful.
        """
        self._stopping = True

    async def run(self) -> None:
        """Consume until cancelled, reconnecting with backoff while the broker is away."""
        if not self.topics:
            return
        failures = 0
        while True:
            error: BaseException | None = None
            if self._stopping:
                return
            try:
                await self._start()
                failures = 0
                await self._loop()
                return
            except asyncio.CancelledError as exc:
                if really_cancelled():
                    raise
                # aiokafka cancels its own internals when the coordinator dies; retry.
                error = exc
            except Exception as exc:
                error = exc
            if error is not None:
                failures += 1
                delay = min(10.0, 0.25 * 2 ** min(failures, 6))
                log.warning("consumer %s: %r; restarting in %.2fs", self.group, error, delay)
                # No offset commit on the way down: the broker is likely what failed, and
                # what it misses is redelivered to the new client and deduped by the inbox.
                await self._stop(commit=False)
                await asyncio.sleep(delay)

    async def close(self) -> None:
        await self._stop()

    async def _start(self) -> None:
        # Subscribing must not auto-create a topic with the broker's default partitions.
        await ensure_topics(self.settings, self.topics)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            group_id=self.group,
            client_id=f"{self.group}-consumer",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=MAX_BATCH_RECORDS,
            metadata_max_age_ms=5000,
            # Tansu does not answer a parked fetch when data arrives, so the wait
            # is the floor of end-to-end latency; on Kafka it costs idle fetches.
            fetch_max_wait_ms=self.settings.consumer_fetch_max_wait_ms,
        )
        self._uncommitted.clear()
        consumer.subscribe(self.topics, listener=_CommitBeforeRevoke(self))
        try:
            await consumer.start()
        except BaseException:
            await stop_quietly(consumer)
            raise
        self._consumer = consumer

    async def _stop(self, *, commit: bool = True) -> None:
        if commit and self._consumer is not None and self._uncommitted:
            # Best effort, bounded: a broker that is gone just means a redelivery later.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.commit_offsets(), 5.0)
        self._uncommitted.clear()
        consumer, self._consumer = self._consumer, None
        producer, self._dlq_producer = self._dlq_producer, None
        await stop_quietly(consumer, producer)

    async def _loop(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        probed_at = 0.0
        fetched_at = time.monotonic()
        while not self._stopping:
            now = time.monotonic()
            if now - fetched_at > self.idle_after_s:
                self._park_fetches_for(max(IDLE_FETCH_MAX_WAIT_MS, self._busy_fetch_wait_ms))
            if now - probed_at > BROKER_PROBE_INTERVAL_S:
                probed_at = now
                # A consumer that lost its broker is rebuilt so it re-reads committed
                # offsets: a restarted memory broker (Tansu) has none and starts over
                # from the earliest offset; the inbox makes the re-read harmless.
                if await broker_down(self.settings.kafka_bootstrap_servers):
                    raise KafkaError("broker unreachable")
            batches = await consumer.getmany(timeout_ms=500, max_records=MAX_BATCH_RECORDS)
            urgent = not batches  # idle: nothing to amortise the commit over
            if batches:
                fetched_at = time.monotonic()
                self._park_fetches_for(self._busy_fetch_wait_ms)
                # Every partition of the fetch in one transaction: each partition's
                # records stay in order, and partitions are independent.
                dead_lettered = self.dead_lettered
                await self.handle_batch([r for records in batches.values() for r in records])
                for tp, records in batches.items():
                    self._uncommitted[tp] = records[-1].offset + 1
                # A dead letter is committed past at once, or a crash would park it twice.
                urgent = self.dead_lettered != dead_lettered
            if self._uncommitted and (
                urgent or time.monotonic() - self._committed_at >= OFFSET_COMMIT_INTERVAL_S
            ):
                await self.commit_offsets()
        await self.commit_offsets()

    @property
    def _busy_fetch_wait_ms(self) -> int:
        return self.settings.consumer_fetch_max_wait_ms

    @property
    def fetch_max_wait_ms(self) -> int | None:
        """How long the broker may park this consumer's next fetch; None when not running."""
        fetcher = getattr(self._consumer, "_fetcher", None)
        wait = getattr(fetcher, "_fetch_max_wait_ms", None)
        return wait if isinstance(wait, int) else None

    def _park_fetches_for(self, wait_ms: int) -> None:
        # aiokafka reads the wait for every fetch request it builds, but offers no setter.
        # On a version without this attribute the consumer just keeps the configured wait.
        fetcher = getattr(self._consumer, "_fetcher", None)
        current = getattr(fetcher, "_fetch_max_wait_ms", None)
        if isinstance(current, int) and current != wait_ms:
            fetcher._fetch_max_wait_ms = wait_ms  # type: ignore[union-attr]

    async def commit_offsets(self, only: Iterable[TopicPartition] | None = None) -> None:
        """Commit the offsets of what was applied (of ``only`` these partitions)."""
        consumer = self._consumer
        if consumer is None:
            return
        assigned = consumer.assignment()
        wanted = self._uncommitted.keys() if only is None else set(only)
        offsets = {tp: self._uncommitted.pop(tp) for tp in list(wanted) if tp in self._uncommitted}
        # A partition taken away meanwhile is the new owner's: it redelivers, the inbox dedupes.
        offsets = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        self._committed_at = time.monotonic()
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except CommitFailedError as exc:
            log.warning("consumer %s: commit failed after rebalance: %r", self.group, exc)
            return
        for tp, offset in offsets.items():
            highwater = consumer.highwater(tp)
            if highwater is not None:
                CONSUMER_LAG.labels(self.group, tp.topic, str(tp.partition)).set(
                    max(0, highwater - offset)
                )

    async def handle_batch(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        """Apply records in one transaction, or fall back to one by one.

        Records of several partitions may come together; each partition's keep their order.

        The fast path claims every event id in one inbox insert and runs the
        handlers in order in the same transaction. Any poison message or
        handler error rolls the whole batch back and replays it record by
        record, where retries and dead-lettering are exact.
        """
        if len(records) == 1:
            await self.handle(records[0])
            return
        events: list[tuple[Subscription, ConsumedEvent]] = []
        subscriptions = self.subscriptions
        try:
            for record in records:
                envelope = parse_envelope(record)
                handler = subscriptions.get(envelope.type)
                if handler is not None:
                    data = parse_data(envelope)
                    event = ConsumedEvent(
                        envelope, data, record.topic, record.partition, record.offset
                    )
                    events.append((handler, event))
        except PoisonMessage:
            await self._one_by_one(records)
            return
        if not events:
            return
        try:
            applied = await self._apply_many(events)
        except Exception as exc:
            log.info("consumer %s: batch failed (%r); applying one by one", self.group, exc)
            await self._one_by_one(records)
            return
        received = Counter(event.envelope.type for _, event in events)
        duplicates: Counter[str] = Counter()
        if len(applied) < len(events):  # a second pass only when something was seen before
            duplicates.update(e.envelope.type for _, e in events if e.envelope.id not in applied)
        for type_, count in received.items():
            if count > duplicates[type_]:
                CONSUMED.labels(self.group, type_, "applied").inc(count - duplicates[type_])
            if duplicates[type_]:
                CONSUMED.labels(self.group, type_, "duplicate").inc(duplicates[type_])
        self.processed += len(events)

    async def _one_by_one(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        for record in records:
            await self.handle(record)

    async def _apply_many(self, events: list[tuple[Subscription, ConsumedEvent]]) -> set[str]:
        async with self.db.session() as session:
            claims = [(event.envelope.id, event.envelope.type) for _, event in events]
            pending = await claim_many_in_inbox(session, self.group, claims)
            applied = set(pending)
            fresh: list[tuple[Subscription, ConsumedEvent]] = []
            for pair in events:
                event_id = pair[1].envelope.id
                if event_id in pending:
                    pending.discard(event_id)  # the same event twice in a batch applies once
                    fresh.append(pair)
            for handler, run in consecutive_runs(fresh):
                await run_handler(session, handler, run)
        return applied

    async def handle(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """Apply one record exactly once in effect, or dead-letter it."""
        try:
            envelope = parse_envelope(record)
            handler = self.subscriptions.get(envelope.type)
            if handler is None:  # another consumer's event on a shared topic
                return
            data = parse_data(envelope)
        except PoisonMessage as exc:
            CONSUMED.labels(self.group, "unparseable", "dead_lettered").inc()
            await self._dead_letter(record, exc)
            return
        event = ConsumedEvent(envelope, data, record.topic, record.partition, record.offset)
        with event_context(envelope):
            await self._apply_with_retries(handler, event, record)

    async def _apply_with_retries(
        self, handler: Subscription, event: ConsumedEvent, record: ConsumerRecord[bytes, bytes]
    ) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                applied = await self._apply(handler, event)
            except TRANSIENT_ERRORS as exc:
                delay = min(10.0, self.settings.consumer_retry_backoff_s * 2 ** min(attempt, 6))
                log.warning(
                    "consumer %s: transient error, retrying in %.2fs: %r", self.group, delay, exc
                )
                await asyncio.sleep(delay)
                continue
            except Exception as exc:
                if attempt < self.settings.consumer_max_attempts:
                    log.warning(
                        "consumer %s: handler failed (attempt %d): %r", self.group, attempt, exc
                    )
                    await asyncio.sleep(self.settings.consumer_retry_backoff_s * attempt)
                    continue
                log.error("consumer %s: giving up on %s: %r", self.group, event.id, exc)
                CONSUMED.labels(self.group, event.envelope.type, "dead_lettered").inc()
                await self._dead_letter(record, exc)
                return
            outcome = "applied" if applied else "duplicate"
            CONSUMED.labels(self.group, event.envelope.type, outcome).inc()
            self.processed += 1
            return

    async def _apply(self, handler: Subscription, event: ConsumedEvent) -> bool:
        async with self.db.session() as session:
            if not await claim_in_inbox(session, self.group, event.id, event.envelope.type):
                return False
            await run_handler(session, handler, [event])
        return True

    async def _dead_letter(
        self, record: ConsumerRecord[bytes, bytes], error: BaseException
    ) -> None:
        headers = [(k, v) for k, v in (record.headers or ()) if not k.startswith(DLQ_HEADER_PREFIX)]
        headers += [
            ("dlq-error", str(error)[:4000].encode()),
            ("dlq-error-type", type(error).__name__.encode()),
            ("dlq-original-topic", record.topic.encode()),
            ("dlq-original-partition", str(record.partition).encode()),
            ("dlq-original-offset", str(record.offset).encode()),
            ("dlq-consumer-group", self.group.encode()),
            ("dlq-failed-at", utcnow().isoformat().encode()),
        ]
        failures = 0
        while True:  # never move past a message that is neither processed nor parked
            try:
                if self._dlq_producer is None:
                    producer = new_producer(self.settings, client_id=f"{self.group}-dlq")
                    await producer.start()
                    self._dlq_producer = producer
                await self._dlq_producer.send_and_wait(
                    self.dlq_topic, value=record.value, key=record.key, headers=headers
                )
                break
            except KafkaError as exc:
                failures += 1
                log.warning("consumer %s: dead-letter send failed: %r", self.group, exc)
                producer, self._dlq_producer = self._dlq_producer, None
                await stop_quietly(producer)
                await asyncio.sleep(min(10.0, 0.25 * 2 ** min(failures, 6)))
        DLQ_MESSAGES.labels(self.group, record.topic).inc()
        self.dead_lettered += 1
        log.error(
            "consumer %s: dead-lettered %s[%d]@%d: %s",
            self.group,
            record.topic,
            record.partition,
            record.offset,
            error,
        )


async def replay_dead_letters(
    settings: ServiceSettings, group: str, *, limit: int | None = None, idle_s: float = 3.0
) -> int:
    """Re-publish a group's dead letters to their original topics; returns how many.

    Other consumer groups see the message again and skip it through their inbox.
    """
    consumer = AIOKafkaConsumer(
        dlq_topic(group),
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=f"{group}.dlq-replay",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = new_producer(settings, client_id=f"{group}-dlq-replay")
    await consumer.start()
    await producer.start()
    replayed = 0
    try:
        while limit is None or replayed < limit:
            batches = await consumer.getmany(timeout_ms=int(idle_s * 1000), max_records=100)
            if not batches:
                break
            for tp, records in batches.items():
                done: ConsumerRecord[bytes, bytes] | None = None
                for record in records:
                    if limit is not None and replayed >= limit:
                        break
                    await _republish(producer, record)
                    replayed += 1
                    done = record
                if done is not None:
                    await consumer.commit({TopicPartition(tp.topic, tp.partition): done.offset + 1})
    finally:
        await producer.stop()
        await consumer.stop()
    return replayed


async def _republish(producer: AIOKafkaProducer, record: ConsumerRecord[bytes, bytes]) -> None:
    headers = dict(record.headers or ())
    original = headers.get("dlq-original-topic")
    if not original:
        raise ValueError(f"dead letter at offset {record.offset} has no dlq-original-topic header")
    kept = [(k, v) for k, v in (record.headers or ()) if not k.startswith(DLQ_HEADER_PREFIX)]
    await producer.send_and_wait(
        original.decode(), value=record.value, key=record.key, headers=kept
    )
