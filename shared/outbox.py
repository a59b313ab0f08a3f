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
import logging
import time
import zlib
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.bus import (
    BROKER_PROBE_INTERVAL_S,
    broker_down,
    ensure_topics,
    new_producer,
    really_cancelled,
    stop_quietly,
)
from shared.db import Database, outbox_table, utcnow
from shared.events.envelope import CONTENT_TYPE, CloudEvent
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
    [event] = await add_events(session, [(data, subject)], source=source)
    return event


async def add_events(
    session: AsyncSession, items: Iterable[tuple[EventData, str]], *, source: str
) -> list[CloudEvent]:
    """Record many ``(data, subject)`` events in one statement (bulk imports, settlements)."""
    traceparent = traceparent_var.get()
    headers = {"content-type": CONTENT_TYPE}
    if traceparent:
        headers["traceparent"] = traceparent
    events: list[CloudEvent] = []
    rows: list[dict[str, object]] = []
    for data, subject in items:
        spec = spec_of(data)
        event = CloudEvent(
            source=source,
            type=spec.name,
            subject=subject,
            schemaversion=spec.version,
            partitionkey=subject,
            traceparent=traceparent,
            data=data.model_dump(mode="json"),
        )
        events.append(event)
        rows.append(
            {
                "event_id": event.id,
                "topic": spec.topic.name,
                "key": subject,
                "type": spec.name,
                "payload": event.to_json().decode(),
                "headers": headers,
                "created_at": event.time,
            }
        )
    if rows:
        await session.execute(insert(outbox_table), rows)
        session.info["outbox_dirty"] = True
    return events


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
        async with self.db.session() as session:
            if not self.db.is_sqlite:
                locked = await session.scalar(
                    select(func.pg_try_advisory_xact_lock(self._lock_key))
                )
                if not locked:
                    return 0
            rows = (
                await session.execute(
                    select(
                        outbox_table.c.id,
                        outbox_table.c.topic,
                        outbox_table.c.key,
                        outbox_table.c.payload,
                        outbox_table.c.headers,
                        outbox_table.c.created_at,
                    )
                    .where(outbox_table.c.sent_at.is_(None))
                    .order_by(outbox_table.c.id)
                    .limit(self.settings.relay_batch_size)
                )
            ).all()
            if not rows:
                OUTBOX_PENDING.labels(self.service).set(0)
                OUTBOX_LAG.labels(self.service).set(0)
                return 0
            oldest = rows[0].created_at
            OUTBOX_LAG.labels(self.service).set((utcnow() - oldest).total_seconds())
            sent_ids, error = await self._send(rows)
            if sent_ids:
                await session.execute(
                    update(outbox_table)
                    .where(outbox_table.c.id.in_(sent_ids))
                    .values(sent_at=utcnow(), attempts=outbox_table.c.attempts + 1)
                )
            if error is not None:
                failed = rows[len(sent_ids)].id
                await session.execute(
                    update(outbox_table)
                    .where(outbox_table.c.id == failed)
                    .values(attempts=outbox_table.c.attempts + 1, last_error=repr(error)[:2000])
                )
            pending: int | None = 0  # the backlog fitted in this batch: no count query
            if error is not None or len(rows) >= self.settings.relay_batch_size:
                # Counted after marking, inside this transaction.
                pending = await session.scalar(
                    select(func.count())
                    .select_from(outbox_table)
                    .where(outbox_table.c.sent_at.is_(None))
                )
            OUTBOX_PENDING.labels(self.service).set(pending or 0)
        OUTBOX_PUBLISHED.labels(self.service).inc(len(sent_ids))
        if error is not None:
            raise error
        return len(sent_ids)

    async def _send(self, rows: Sequence[Any]) -> tuple[list[int], Exception | None]:
        """Send rows in order; the sent prefix up to the first failure counts as sent."""
        producer = await self._ensure_producer()
        futures = []
        error: Exception | None = None
        for row in rows:
            try:
                futures.append(
                    await producer.send(
                        row.topic,
                        value=row.payload.encode(),
                        key=row.key.encode(),
                        headers=[(k, v.encode()) for k, v in row.headers.items()],
                    )
                )
            except Exception as exc:
                error = exc
                break
        results = await asyncio.gather(*futures, return_exceptions=True)
        sent: list[int] = []
        for row, result in zip(rows, results, strict=False):
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
