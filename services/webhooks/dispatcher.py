"""Sending recorded deliveries: leases per endpoint, Standard Webhooks requests, retries.

How it runs: one loop per replica (``run_forever``, started from the app's
``on_startup``; a ``ScheduledJob`` would hold one transaction across HTTP calls).
It wakes when a transaction that recorded deliveries commits in this process
(the consumer's, a replay's), and polls every ``dispatch_poll_interval_s`` for
retries coming due and for deliveries other replicas recorded. Each round it
claims endpoints that have a delivery due, taking a lease on the endpoint row
(``FOR UPDATE SKIP LOCKED`` + a conditional UPDATE, as in shared/scheduler.py),
and serves each claimed endpoint in its own task; an endpoint being served
when more deliveries are recorded picks them up in the same turn, in the
transaction that writes the previous batch's outcomes:

- across endpoints, up to ``dispatch_concurrency`` tasks at once, so a slow or
  hung endpoint only holds its own task;
- within an endpoint, the deliveries of one event key (the aggregate, the Kafka
  message key) one at a time in the order they were recorded, up to
  ``dispatch_concurrency_per_endpoint`` keys at once; so a partner sees each
  aggregate's events in order while nothing fails, and a far-away partner is not
  capped at one round trip per delivery. A delivery waiting for its retry does
  not hold back newer ones, and a failure ends the endpoint's turn (a failing
  endpoint gets one try per turn).

HTTP goes straight to httpcore's keep-alive pool: httpx's client layers
(URL merging, auth, redirect and cookie hooks) cost about as much CPU as the
request itself, and we use none of them. Every new connection is resolved,
checked and connected by ``GuardedBackend`` (ssrf.py); redirects are never
followed (httpcore has no such thing); the pool has a connection for every
request that may be in flight, so no endpoint waits for a slot another holds.

No transaction is open during HTTP. A delivery's outcome is written with a
conditional UPDATE (``status = 'pending' AND attempts = n``), so it is settled
once; a replica that dies mid-request leaves its lease to expire and the
delivery is sent again with the same ``webhook-id`` (at least once; receivers
dedupe on it, as Standard Webhooks asks).

Retry schedule (``retry_schedule_s``): 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h
after the 1st..7th failed attempt, each plus up to ``retry_jitter`` (20 %) at
random; the 8th failure marks the delivery failed (replayable). A 429 or 503
with ``Retry-After`` waits what the receiver asked for (capped). A 410 disables
the endpoint at once; an endpoint failing with no success for
``disable_after_failing_h`` is disabled too; both publish
``webhook.endpoint_disabled``.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import random
import socket
import time
import uuid
import weakref
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpcore
import httpx
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from services.webhooks.models import WebhookEndpoint
from services.webhooks.repository import (
    FAILED,
    NEW_DELIVERIES,
    SUCCEEDED,
    DeliveryRepository,
    DueDelivery,
    EndpointRepository,
)
from services.webhooks.service import policy_for, sealer_for, webhook_service
from services.webhooks.settings import WebhooksSettings
from services.webhooks.signing import headers_for
from services.webhooks.ssrf import Resolver, TargetBlocked, guarded_pool, system_resolver
from shared.db import Database, utcnow
from shared.events.envelope import CONTENT_TYPE

log = logging.getLogger(__name__)

USER_AGENT = b"community-platform-webhooks/1"
FETCH_PER_QUERY = 100
# httpcore's errors share no base class; these are "the request failed", not bugs.
HTTP_ERRORS = (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol, OSError)


def ordering_key(delivery: DueDelivery) -> str:
    """The event's Kafka key (its aggregate); deliveries with one key are sent in order."""
    assert delivery.payload is not None
    event = json.loads(delivery.payload)
    return str(event.get("partitionkey") or event.get("subject") or "")


@dataclass(frozen=True)
class Target:
    id: str
    url: httpcore.URL
    secrets: tuple[str, ...]

    @classmethod
    def of(cls, endpoint_id: str, url: str, secrets: tuple[str, ...]) -> Target:
        # httpx's parsing (IDNA, percent-encoding), as at registration; once per batch.
        parsed = httpx.URL(url)
        return cls(
            endpoint_id,
            httpcore.URL(
                scheme=parsed.raw_scheme,
                host=parsed.raw_host,
                port=parsed.port,
                target=parsed.raw_path,
            ),
            secrets,
        )


@dataclass(frozen=True)
class Outcome:
    success: bool
    status_code: int | None
    latency_ms: int
    snippet: str | None
    error: str | None
    retry_after_s: float | None = None

    @property
    def gone(self) -> bool:
        return self.status_code == 410


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


_LISTENING: weakref.WeakSet[Dispatcher] = weakref.WeakSet()


@event.listens_for(Session, "after_commit")
def _deliveries_committed(session: Session) -> None:
    """Wake the dispatchers of this database after a commit that recorded deliveries."""
    if session.info.get(NEW_DELIVERIES):
        for dispatcher in list(_LISTENING):
            dispatcher.heard_commit(session)


def _header(response: httpcore.Response, name: bytes) -> str | None:
    for key, value in response.headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class Dispatcher:
    def __init__(
        self,
        db: Database,
        settings: WebhooksSettings,
        *,
        resolver: Resolver = system_resolver,
        clock: Callable[[], datetime] = utcnow,
        rng: Callable[[], float] = random.random,
        name: str | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.rng = rng
        self.name = (name or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}")[:64]
        in_flight = settings.dispatch_concurrency * settings.dispatch_concurrency_per_endpoint
        self.pool = guarded_pool(
            policy_for(settings),
            resolver=resolver,
            max_connections=in_flight,
            max_keepalive_connections=in_flight,
        )
        self._serving: dict[str, asyncio.Task[int]] = {}
        self._wake = asyncio.Event()
        self._rung = 0  # commits of new deliveries seen; a serving turn compares it
        self._engine = db.engine.sync_engine
        _LISTENING.add(self)

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.dispatch_lease_s)

    def heard_commit(self, session: Session) -> None:
        if session.bind is self._engine:
            self.wake()

    def wake(self) -> None:
        """New deliveries are due: claim them now rather than at the next poll."""
        self._rung += 1
        self._wake.set()

    async def run_once(self) -> int:
        """Claim what is due now and serve it to the end; how many attempts were made."""
        tasks = await self.start_due()
        return sum(await asyncio.gather(*tasks))

    async def run_forever(self) -> None:
        while True:
            # Cleared before claiming: a commit while claiming wakes the next round.
            self._wake.clear()
            try:
                await self.start_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook dispatcher %s: claiming failed", self.name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.dispatch_poll_interval_s)

    async def close(self) -> None:
        _LISTENING.discard(self)
        tasks = list(self._serving.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.pool.aclose()

    async def start_due(self) -> list[asyncio.Task[int]]:
        free = self.settings.dispatch_concurrency - len(self._serving)
        if free <= 0:
            return []
        now = self.clock()
        async with self.db.session() as session:
            endpoints = EndpointRepository(session)
            candidates = await endpoints.claimable(now, list(self._serving), free)
            claimed = [
                endpoint_id
                for endpoint_id in candidates
                if await endpoints.take_lease(endpoint_id, self.name, now, now + self.lease)
            ]
        tasks = []
        for endpoint_id in claimed:
            task = asyncio.create_task(self._serve(endpoint_id), name=f"webhook:{endpoint_id}")
            self._serving[endpoint_id] = task
            tasks.append(task)
        return tasks

    async def _serve(self, endpoint_id: str) -> int:
        """One turn at an endpoint: batches of due deliveries until none is left, the
        endpoint fails, or ``dispatch_batch_per_endpoint`` attempts were made.

        Two transactions per batch at most: the outcomes of one batch are written
        in the transaction that reads the next (or gives the lease back).
        """
        cap = self.settings.dispatch_batch_per_endpoint
        attempts = 0
        seen = self._rung
        released = False
        try:
            async with self.db.session() as session:
                batch = await self._next_batch(session, endpoint_id, cap)
                if batch is None:
                    await self._release(session, endpoint_id)
            released = batch is None
            while batch is not None:
                target, due = batch
                sent = await self._send_by_key(target, due)
                attempts += len(sent)
                async with self.db.session() as session:
                    settled = await self._settle(session, endpoint_id, sent)
                    more = len(due) >= FETCH_PER_QUERY or len(sent) < len(due)
                    batch = None
                    if (
                        settled
                        and all(outcome.success for _, outcome in sent)
                        and (more or self._rung != seen)
                        and attempts < cap
                        and await EndpointRepository(session).renew_lease(
                            endpoint_id, self.name, self.clock() + self.lease
                        )
                    ):
                        seen = self._rung  # before reading: a later commit is seen next time
                        batch = await self._next_batch(session, endpoint_id, cap - attempts)
                    if batch is None:
                        # A failing endpoint gets one try per turn; so does one whose lease
                        # went to another replica.
                        await self._release(session, endpoint_id)
                released = batch is None
            return attempts
        except Exception:
            log.exception("webhook dispatcher %s: serving %s failed", self.name, endpoint_id)
            return attempts
        finally:
            if not released:
                with contextlib.suppress(Exception):
                    async with self.db.session() as session:
                        await self._release(session, endpoint_id)
            # Forgotten here, not in a done callback: a wake from now on may claim it again.
            self._serving.pop(endpoint_id, None)
            if self._rung != seen or attempts >= cap:
                self._wake.set()  # recorded while the lease was being given back, or capped

    async def _next_batch(
        self, session: AsyncSession, endpoint_id: str, room: int
    ) -> tuple[Target, list[DueDelivery]] | None:
        endpoint = await EndpointRepository(session).get(endpoint_id)
        if endpoint is None or not endpoint.enabled or endpoint.lease_owner != self.name:
            return None
        limit = min(FETCH_PER_QUERY, room)
        due = await DeliveryRepository(session).due_for(endpoint_id, self.clock(), limit)
        return (self._target(endpoint), due) if due else None

    async def _release(self, session: AsyncSession, endpoint_id: str) -> None:
        await EndpointRepository(session).release_lease(endpoint_id, self.name, self.clock())

    async def _send_by_key(
        self, target: Target, due: list[DueDelivery]
    ) -> list[tuple[DueDelivery, Outcome]]:
        """Each ordering key's deliveries one by one, up to ``dispatch_concurrency_per_endpoint``
        keys at once.

        Events of one aggregate (the Kafka key) reach the partner in order; different
        aggregates need not wait for each other's round trips, so a partner far away
        still gets hundreds of deliveries a second. The first failure ends the turn
        (requests already in flight finish; a failing endpoint is not hammered with
        one try per key), and so does the lease needing renewal. Outcomes are written
        together afterwards (one transaction per batch); a crash before that only
        means these are sent again, same ids.
        """
        lanes: dict[str, list[DueDelivery]] = {}
        for delivery in due:
            if delivery.payload is not None:
                lanes.setdefault(ordering_key(delivery), []).append(delivery)
        sent: list[tuple[DueDelivery, Outcome]] = []
        deadline = time.monotonic() + self.settings.dispatch_lease_s / 3
        gate = asyncio.Semaphore(self.settings.dispatch_concurrency_per_endpoint)
        failed = asyncio.Event()

        async def lane(deliveries: list[DueDelivery]) -> None:
            async with gate:
                for delivery in deliveries:
                    if failed.is_set() or time.monotonic() > deadline:
                        return
                    outcome = await self._send(target, delivery)
                    sent.append((delivery, outcome))
                    if not outcome.success:
                        failed.set()

        await asyncio.gather(*(lane(deliveries) for deliveries in lanes.values()))
        return sent

    def _target(self, endpoint: WebhookEndpoint) -> Target:
        sealer = sealer_for(self.settings)
        secrets = [sealer.open(endpoint.secret_ciphertext)]
        previous, expires = endpoint.previous_secret_ciphertext, endpoint.previous_secret_expires_at
        if previous and expires is not None and expires > self.clock():
            secrets.append(sealer.open(previous))
        return Target.of(endpoint.id, endpoint.url, tuple(secrets))

    async def _send(self, target: Target, delivery: DueDelivery) -> Outcome:
        assert delivery.payload is not None
        body = delivery.payload.encode()
        signed = headers_for(target.secrets, delivery.event_id, int(time.time()), body)
        headers = [
            *((name.encode(), value.encode()) for name, value in signed.items()),
            (b"content-type", CONTENT_TYPE.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"user-agent", USER_AGENT),
        ]
        total = self.settings.total_timeout_s
        connect = self.settings.connect_timeout_s
        timeouts = {"connect": connect, "read": total, "write": total, "pool": total}
        started = time.perf_counter()
        status: int | None = None
        snippet: str | None = None
        error: str | None = None
        retry_after: float | None = None
        try:
            async with (
                asyncio.timeout(total),
                self.pool.stream(
                    b"POST",
                    target.url,
                    headers=headers,
                    content=body,
                    extensions={"timeout": timeouts},
                ) as response,
            ):
                status = response.status
                snippet = await self._snippet(response)
                if status in (429, 503):
                    retry_after = parse_retry_after(_header(response, b"retry-after"), self.clock())
        except TargetBlocked as exc:
            error = f"target blocked: {exc}"
        except (TimeoutError, httpcore.TimeoutException):
            error = f"timed out after {total:g} s"
        except HTTP_ERRORS as exc:
            error = f"{type(exc).__name__}: {exc}"
        latency_ms = int((time.perf_counter() - started) * 1000)
        if status is not None and 300 <= status < 400:
            error = f"redirect ({status}) not followed"
        elif status is not None and not 200 <= status < 300:
            error = f"HTTP {status}"
        return Outcome(
            success=status is not None and 200 <= status < 300,
            status_code=status,
            latency_ms=latency_ms,
            snippet=snippet,
            error=error[:500] if error else None,
            retry_after_s=retry_after,
        )

    async def _snippet(self, response: httpcore.Response) -> str | None:
        limit = self.settings.response_snippet_bytes
        chunks = bytearray()
        stream = response.stream
        assert isinstance(stream, AsyncIterable)
        async for chunk in stream:
            chunks += chunk
            if len(chunks) >= limit:
                break
        return bytes(chunks[:limit]).decode(errors="replace") if chunks else None

    def retry_delay_s(self, attempt: int, retry_after_s: float | None) -> float | None:
        """Seconds until the next try after failed attempt number ``attempt``; None: give up."""
        schedule = self.settings.retry_schedule_s
        if attempt > len(schedule):
            return None
        if retry_after_s is not None:
            return min(retry_after_s, self.settings.retry_after_max_s)
        return schedule[attempt - 1] * (1 + self.settings.retry_jitter * self.rng())

    async def _settle(
        self, session: AsyncSession, endpoint_id: str, sent: list[tuple[DueDelivery, Outcome]]
    ) -> bool:
        """Write the attempts and their effects in ``session``; whether to keep serving."""
        if not sent:
            return True
        now = self.clock()
        deliveries = DeliveryRepository(session)
        await deliveries.add_attempts([self._attempt_row(endpoint_id, d, o, now) for d, o in sent])
        settled_all = await self._settle_successes(deliveries, sent, now)
        for delivery, outcome in sent:
            if outcome.success:
                continue
            values = self._outcome_values(delivery.attempts + 1, outcome, now)
            if not await deliveries.settle(delivery.id, delivery.attempts, **values):
                settled_all = False  # another sender settled it first
        endpoint = await EndpointRepository(session).get(endpoint_id)
        if endpoint is None:
            return False
        await self._track_health(session, endpoint, [o for _, o in sent], now)
        return settled_all and endpoint.enabled

    async def _settle_successes(
        self,
        deliveries: DeliveryRepository,
        sent: list[tuple[DueDelivery, Outcome]],
        now: datetime,
    ) -> bool:
        """One UPDATE per (attempt number, status code): nearly always one for the batch."""
        groups: dict[tuple[int, int | None], list[str]] = {}
        for delivery, outcome in sent:
            if outcome.success:
                groups.setdefault((delivery.attempts, outcome.status_code), []).append(delivery.id)
        settled_all = True
        for (attempts, status_code), ids in groups.items():
            settled = await deliveries.settle_succeeded(ids, attempts, status_code, now)
            settled_all = settled_all and settled == len(ids)
        return settled_all

    def _attempt_row(
        self, endpoint_id: str, delivery: DueDelivery, outcome: Outcome, now: datetime
    ) -> dict[str, object]:
        return {
            "id": str(uuid.uuid4()),
            "delivery_id": delivery.id,
            "endpoint_id": endpoint_id,
            "attempted_at": now,
            "success": outcome.success,
            "status_code": outcome.status_code,
            "latency_ms": outcome.latency_ms,
            "response_snippet": outcome.snippet,
            "error": outcome.error,
        }

    def _outcome_values(self, attempt: int, outcome: Outcome, now: datetime) -> dict[str, object]:
        values: dict[str, object] = {
            "attempts": attempt,
            "last_attempt_at": now,
            "last_status_code": outcome.status_code,
            "last_error": outcome.error,
        }
        if outcome.success:
            values.update(status=SUCCEEDED, delivered_at=now)
            return values
        delay = self.retry_delay_s(attempt, outcome.retry_after_s)
        if delay is None:
            values["status"] = FAILED
        else:
            values["next_attempt_at"] = now + timedelta(seconds=delay)
        return values

    async def _track_health(
        self,
        session: AsyncSession,
        endpoint: WebhookEndpoint,
        outcomes: list[Outcome],
        now: datetime,
    ) -> None:
        gone = any(outcome.gone for outcome in outcomes)
        if not gone and any(outcome.success for outcome in outcomes):
            endpoint.failing_since = None
            return
        if endpoint.failing_since is None:
            endpoint.failing_since = now
        if not endpoint.enabled:
            return
        limit = timedelta(hours=self.settings.disable_after_failing_h)
        if gone:
            await webhook_service.disable(session, endpoint, "the endpoint answered 410 Gone", now)
        elif now - endpoint.failing_since >= limit:
            since = endpoint.failing_since.isoformat()
            reason = f"failing without a success since {since}"
            await webhook_service.disable(session, endpoint, reason, now)
