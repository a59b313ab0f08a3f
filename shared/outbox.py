"""The transactional outbox and its relay.

``add_event`` writes the event in the caller's transaction, so the state change
and the event commit together or not at all. The relay publishes pending rows
in id order, marks them sent, and keeps them pending through any broker error;
nothing committed is lost, and a duplicate publish is harmless because every
consumer dedupes by event id.

Ordering: rows go out in id order, so events of one aggregate (one key, one
partition) arrive in commit order. After a failed send, rows behind the failed
one are sent again with it; a consumer may then see a later event once before
the earlier one's retry. Handlers must not assume more than "each event once".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
import time
import zlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from aiokafka.producer.message_accumulator import BatchBuilder
from sqlalchemy import (
    JSON,
    DateTime,
    Executable,
    Text,
    TypeDecorator,
    bindparam,
    cast,
    delete,
    func,
    insert,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession

from shared.bus import (
    BROKER_PROBE_INTERVAL_S,
    broker_down,
    ensure_topics,
    new_producer,
    really_cancelled,
    stop_quietly,
)
from shared.db import Database, dialect_of, in_bound_list, outbox_table, utcnow
from shared.events.envelope import CONTENT_TYPE, CloudEvent, new_event_id, structured_json
from shared.events.registry import EventData, spec_of
from shared.events.topics import DOMAIN_TOPICS
from shared.observability import (
    OUTBOX_LAG,
    OUTBOX_PENDING,
    OUTBOX_PUBLISHED,
    OUTBOX_SEND_ERRORS,
    traceparent_var,
)
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)


async def add_event(
    session: AsyncSession, data: EventData, *, subject: str, source: str
) -> CloudEvent:
    """Record ``data`` as a CloudEvent in the outbox, inside the caller's transaction."""
    _, [row] = outbox_rows([(data, subject, traceparent_var.get())], source)
    await _insert(session, [row])
    return CloudEvent.from_json(str(row["payload"]))


async def add_events(
    session: AsyncSession, items: Iterable[tuple[EventData, str]], *, source: str
) -> list[str]:
    """Record many ``(data, subject)`` events in one statement (bulk imports, settlements);
    returns their event ids, in order."""
    traceparent = traceparent_var.get()
    ids, rows = outbox_rows(((data, subject, traceparent) for data, subject in items), source)
    await _insert(session, rows)
    return ids


async def _insert(session: AsyncSession, rows: list[dict[str, object]]) -> None:
    if not rows:
        return
    if len(rows) > 1 and dialect_of(session) == "postgresql":
        columns = {name: [row[name] for row in rows] for name in INSERTED_COLUMNS}
        await session.execute(INSERT_EVENT_ARRAYS, columns)
    else:
        await session.execute(INSERT_EVENTS, rows)
    session.info["outbox_dirty"] = True


def outbox_rows(
    items: Iterable[tuple[EventData, str, str | None]], source: str
) -> tuple[list[str], list[dict[str, object]]]:
    """The event ids and the outbox rows (for ``INSERT_EVENTS``) of ``(data, subject,
    traceparent)`` items: each keeps its own trace, so requests committed together (group
    commit) stay on their own traces."""
    headers_of: dict[str | None, str] = {}  # one JSON text per trace, not one per row
    ids: list[str] = []
    rows: list[dict[str, object]] = []
    for data, subject, traceparent in items:
        spec = spec_of(data)
        event_id = new_event_id()
        at = datetime.now(UTC)
        headers = headers_of.get(traceparent)
        if headers is None:
            trace = {"traceparent": traceparent} if traceparent else {}
            headers = headers_of[traceparent] = json.dumps({"content-type": CONTENT_TYPE, **trace})
        ids.append(event_id)
        rows.append(
            {
                "event_id": event_id,
                "topic": spec.topic.name,
                "key": subject,
                "type": spec.name,
                "payload": structured_json(
                    data,
                    id=event_id,
                    source=source,
                    type=spec.name,
                    subject=subject,
                    time=at,
                    schemaversion=spec.version,
                    traceparent=traceparent,
                ).decode(),
                "headers": headers,
                "created_at": at,
            }
        )
    return ids, rows


class JsonText(TypeDecorator[str]):
    """A JSON column value that is already JSON text: bound as it is, not serialised again."""

    impl = JSON
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> None:
        return None


INSERT_EVENTS = insert(outbox_table).values(headers=bindparam("headers", type_=JsonText()))

INSERTED_COLUMNS = ("event_id", "topic", "key", "type", "payload", "headers", "created_at")


def _insert_event_arrays() -> Executable:
    """Many rows on PostgreSQL: one array per column, read back by ``unnest``, one
    statement. An executemany binds and executes the statement once per row. Alone, in
    100-row transactions, four pairs: 2-23 % less client CPU an event, and 25,600-35,200
    against 21,800-27,300 events/s."""
    arrays = (
        bindparam(name, type_=pg.ARRAY(DateTime(timezone=True) if name == "created_at" else Text))
        for name in INSERTED_COLUMNS
    )
    batch = func.unnest(*arrays).table_valued(*INSERTED_COLUMNS).render_derived(name="batch")
    values = [cast(batch.c.headers, JSON) if name == "headers" else batch.c[name]
              for name in INSERTED_COLUMNS]  # fmt: skip
    return insert(outbox_table).from_select(INSERTED_COLUMNS, select(*values))


INSERT_EVENT_ARRAYS = _insert_event_arrays()


PENDING_COUNT_INTERVAL_S = 1.0
PENDING_COUNT = (
    select(func.count()).select_from(outbox_table).where(outbox_table.c.sent_at.is_(None))
)


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``Utils.murmur2``), as aiokafka's but reading four bytes at a time.

    The relay hashes every key it sends; aiokafka's byte-by-byte version was a
    third of the relay's time.
    """
    m = 0x5BD1E995
    length = len(data)
    h = 0x9747B28C ^ length
    words = length >> 2
    for k in struct.unpack_from(f"<{words}I", data):
        k = (k * m) & 0xFFFFFFFF
        k = ((k ^ (k >> 24)) * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = length & 3
    if tail:
        base = words << 2
        if tail == 3:
            h ^= data[base + 2] << 16
        if tail >= 2:
            h ^= data[base + 1] << 8
        h = ((h ^ data[base]) * m) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * m) & 0xFFFFFFFF
    return h ^ (h >> 15)


def partition_for(key: bytes, partitions: list[int]) -> int:
    """The partition Kafka's default partitioner picks for ``key`` (Java clients agree)."""
    return partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]


class OutboxRelay:
    """Publishes a service's outbox to Kafka; one instance per service process.

    With several replicas on PostgreSQL each batch takes a transaction-level
    advisory lock, so one relay publishes at a time and per-key order holds.
    """

    def __init__(self, db: Database, settings: ServiceSettings) -> None:
        self.db = db
        self.settings = settings
        self.service = settings.service_name
        self._lock_key = zlib.crc32(f"outbox:{self.service}".encode())
        self._wake = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._failures = 0
        self._probed_at = 0.0
        self._counted_at = 0.0
        # Built once: constructing the statements cost more than running them.
        self._pending_rows = (
            select(
                outbox_table.c.id,
                outbox_table.c.topic,
                outbox_table.c.key,
                outbox_table.c.payload,
                # Text, decoded once per distinct value: a batch's rows share their headers.
                cast(outbox_table.c.headers, Text).label("headers"),
                # Only the first row's is read (the lag): no UtcDateTime fix-up on every row.
                type_coerce(outbox_table.c.created_at, DateTime(timezone=True)).label("created_at"),
            )
            .where(outbox_table.c.sent_at.is_(None))
            .order_by(outbox_table.c.id)
            .limit(settings.relay_batch_size)
        )
        # With the lock, in the same round trip: this transaction's statements are planned
        # for their actual arguments. A prepared statement's generic plan is fixed when
        # it is first chosen, often on a near-empty outbox: marking 500 ids sent then ran
        # as a table scan testing each row against the whole id array, 45-75 ms on a
        # 20,000-row outbox, and slower the larger a backlog grows. Only here, not on every
        # connection: custom plans everywhere cost 28 % more server CPU on point reads, and
        # an ANALYZE (autovacuum's, on a default server) replaces a stale generic plan.
        # The relay's is the one measured to hurt, on a server with autovacuum off.
        self._lock = select(
            func.pg_try_advisory_xact_lock(self._lock_key),
            func.set_config("plan_cache_mode", "force_custom_plan", True),
        )
        self._mark_sent = (
            update(outbox_table)
            .where(in_bound_list(outbox_table.c.id, "ids", db.engine.dialect.name))
            .values(sent_at=bindparam("now"), attempts=outbox_table.c.attempts + 1)
        )
        db.on_commit(self._wake.set)

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            error: BaseException | None = None
            published = 0
            # Cleared before publishing: a commit during the publish wakes the next round.
            self._wake.clear()
            try:
                published = await self.publish_batch()
            except asyncio.CancelledError as exc:
                if really_cancelled():
                    raise
                error = exc
            except Exception as exc:
                error = exc
            if error is not None:
                self._failures += 1
                OUTBOX_SEND_ERRORS.labels(self.service).inc()
                delay = min(self.settings.relay_max_backoff_s, 0.25 * 2 ** min(self._failures, 8))
                log.warning("outbox relay: publish failed, retrying in %.2fs: %r", delay, error)
                await self._reset_producer()
                await asyncio.sleep(delay)
                continue
            self._failures = 0
            if published >= self.settings.relay_batch_size:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.relay_poll_interval_s)

    async def publish_batch(self) -> int:
        """Publish up to one batch of pending events; returns how many were marked sent."""
        now = time.monotonic()
        if now - self._probed_at > BROKER_PROBE_INTERVAL_S:
            self._probed_at = now
            broker_gone = await broker_down(self.settings.kafka_bootstrap_servers)
        else:
            broker_gone = False
        if broker_gone:
            # Dropping the producer while the broker is away means the next one starts
            # from fresh metadata and re-creates lost topics before it sends.
            raise KafkaConnectionError("broker unreachable")
        # A Core transaction, not an ORM session: the relay maps nothing, and a session's
        # unit-of-work bookkeeping was a tenth of a small batch's cost.
        async with self.db.engine.begin() as conn:
            if not self.db.is_sqlite:
                locked = await conn.scalar(self._lock)
                if not locked:
                    return 0
            rows = (await conn.execute(self._pending_rows)).all()
            if not rows:
                OUTBOX_PENDING.labels(self.service).set(0)
                OUTBOX_LAG.labels(self.service).set(0)
                return 0
            oldest = rows[0].created_at
            if oldest.tzinfo is None:  # SQLite keeps no zone; every outbox time is UTC
                oldest = oldest.replace(tzinfo=UTC)
            OUTBOX_LAG.labels(self.service).set((utcnow() - oldest).total_seconds())
            sent_ids, error = await self._send(rows)
            if sent_ids:
                await conn.execute(self._mark_sent, {"ids": sent_ids, "now": utcnow()})
            if error is not None:
                failed = rows[len(sent_ids)].id
                await conn.execute(
                    update(outbox_table)
                    .where(outbox_table.c.id == failed)
                    .values(attempts=outbox_table.c.attempts + 1, last_error=repr(error)[:2000])
                )
            if len(rows) < self.settings.relay_batch_size and error is None:
                OUTBOX_PENDING.labels(self.service).set(0)  # the backlog fitted in this batch
            elif time.monotonic() - self._counted_at > PENDING_COUNT_INTERVAL_S:
                # Counted after marking, inside this transaction; while a backlog drains,
                # at most once a second rather than once a batch.
                self._counted_at = time.monotonic()
                pending = await conn.scalar(PENDING_COUNT)
                OUTBOX_PENDING.labels(self.service).set(pending or 0)
        OUTBOX_PUBLISHED.labels(self.service).inc(len(sent_ids))
        if error is not None:
            raise error
        return len(sent_ids)

    async def _send(self, rows: Sequence[Any]) -> tuple[list[int], Exception | None]:
        """Send rows in order; the sent prefix up to the first failure counts as sent.

        Rows are packed into record batches per partition and handed over whole:
        per message, ``producer.send`` costs a future, a queue append and a
        metadata check, which dominated the relay's time. Each partition gets its
        batches in row order, and a partition has one batch in flight at a time.
        """
        producer = await self._ensure_producer()
        partitions: dict[str, list[int]] = {}
        open_batches: dict[tuple[str, int], tuple[int, BatchBuilder]] = {}
        futures: dict[int, asyncio.Future[Any]] = {}  # batch number -> delivery
        batch_of_row: list[int] = []
        headers_of: dict[str, list[tuple[str, bytes]]] = {}
        error: Exception | None = None

        async def submit(tp: tuple[str, int]) -> None:
            number, builder = open_batches.pop(tp)
            # Closed, the batch is ready at once: it would otherwise wait out linger_ms
            # for sends that never come, as the relay hands over finished batches.
            builder.close()
            futures[number] = await producer.send_batch(builder, tp[0], partition=tp[1])

        try:
            for row_id, topic, key_text, payload, headers_text, _ in rows:
                topic_partitions = partitions.get(topic)
                if topic_partitions is None:
                    topic_partitions = partitions[topic] = sorted(
                        await producer.partitions_for(topic)
                    )
                key = key_text.encode()
                tp = (topic, partition_for(key, topic_partitions))
                value = payload.encode()
                headers = headers_of.get(headers_text)
                if headers is None:
                    headers = headers_of[headers_text] = [
                        (k, v.encode()) for k, v in json.loads(headers_text).items()
                    ]
                current = open_batches.get(tp)
                if (
                    current is None
                    or current[1].append(timestamp=None, key=key, value=value, headers=headers)
                    is None
                ):
                    if current is not None:
                        await submit(tp)
                    current = open_batches[tp] = (len(batch_of_row), producer.create_batch())
                    if (
                        current[1].append(timestamp=None, key=key, value=value, headers=headers)
                        is None
                    ):
                        raise ValueError(f"outbox row {row_id} is larger than a record batch")
                batch_of_row.append(current[0])
            for tp in list(open_batches):
                await submit(tp)
        except Exception as exc:
            error = exc
        outcomes = await asyncio.gather(*futures.values(), return_exceptions=True)
        results = dict(zip(futures, outcomes, strict=True))
        sent: list[int] = []
        for row, number in zip(rows, batch_of_row, strict=False):
            if number not in results:  # its batch was never handed over
                break
            result = results[number]
            if isinstance(result, BaseException):
                error = result if isinstance(result, Exception) else RuntimeError(repr(result))
                break
            sent.append(row.id)
        return sent, error

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            # Before the first send of a (new) producer, so that a broker that lost its
            # topics (a restarted memory broker) gets them back with their partition
            # counts instead of auto-created ones that would re-shuffle keys.
            await ensure_topics(self.settings, [t.name for t in DOMAIN_TOPICS])
            producer = new_producer(self.settings, client_id=f"{self.service}-relay")
            try:
                await producer.start()
            except BaseException:
                await stop_quietly(producer)
                raise
            self._producer = producer
        return self._producer

    async def _reset_producer(self) -> None:
        producer, self._producer = self._producer, None
        await stop_quietly(producer)

    async def close(self) -> None:
        await self._reset_producer()

    async def purge_sent(self, older_than: timedelta) -> int:
        async with self.db.session() as session:
            result = await session.execute(
                delete(outbox_table).where(outbox_table.c.sent_at < utcnow() - older_than)
            )
        return int(getattr(result, "rowcount", 0) or 0)
