"""The one way a service is assembled: settings, database, migrations, relay, consumer, HTTP.

A service's ``app.py`` calls ``create_service_app`` with its settings, routers,
migrations folder and ``SUBSCRIPTIONS``; everything else is the same everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, ExecutionContext
from sqlalchemy.pool import ConnectionPoolEntry
from starlette.middleware import Middleware
from starlette.responses import Response

from shared import idempotency
from shared.auth import TokenCodec
from shared.bus import broker_reachable, ensure_topics
from shared.consumer import EventConsumer, Subscription
from shared.db import Database
from shared.errors import PROBLEM_RESPONSES, install_error_handlers, problem
from shared.events.topics import DOMAIN_TOPICS, dlq_topic
from shared.limits import BodySizeLimit
from shared.migrations import upgrade
from shared.observability import RequestContextMiddleware, configure_logging
from shared.outbox import OutboxRelay
from shared.scheduler import ScheduledJob, run_forever
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)

HOUSEKEEPING_INTERVAL_S = 300.0
OUTBOX_RETENTION = timedelta(days=3)
RELAY_TASK = "outbox-relay"
CONSUMER_TASK = "consumer"
# Closing the Kafka clients gets at least this long even when stopping used up the budget.
CLOSE_FLOOR_S = 0.5

# CPython collects its youngest generation after 700 net new container objects. A
# consumer's 500-event batch, or a burst of requests, keeps thousands alive at once, so
# they were scanned again and again, promoted, and the promotions set off full collections:
# a third of the consumer's CPU per event. Acyclic garbage is freed by reference counting
# whatever this says; with it, a consumer run of 20,000 events collected nothing.
GC_YOUNG_THRESHOLD = 10_000

LifecycleHook = Callable[["ServiceRuntime"], Awaitable[None]]
# On SQLite, requests of one process that run their transaction at once unless
# ``max_concurrent_transactions`` says otherwise; the rest wait in arrival order. SQLite
# writes one at a time and a service is one event loop: more requests in flight only
# interleave, so each finishes later and a writer's turn stretches over the others' work.
# Bounded to 6, the in-process mixed load's p99 halved at the same CPU per request. On
# PostgreSQL transactions do run side by side, and a bound would let a slow upstream call
# (campaigns asking members) hold up every other request: unbounded unless set.
SQLITE_CONCURRENT_TRANSACTIONS = 6
# As long as SQLite's own busy timeout (shared.db): past it, SQLite decides as it did before.
WRITE_TURN_TIMEOUT_S = 10.0
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLAC")


class SqliteWriteTurns:
    """One SQLite write transaction at a time in this process, in arrival order.

    SQLite lets one connection write at a time; another gets SQLITE_BUSY and its busy
    handler sleeps 1, 2, 5, 10 ... 100 ms between retries, so concurrent writers (requests,
    the outbox relay, consumers) waited up to seconds: the mixed load's p99. Here a
    connection takes the turn before its first INSERT/UPDATE/DELETE, where SQLite's write
    lock would be taken, and hands it on when it goes back to the pool, after its commit or
    rollback: the next writer starts at once instead of at its next retry.
    """

    KEY = "sqlite_write_turn"

    def __init__(self, engine: Engine, timeout_s: float = WRITE_TURN_TIMEOUT_S) -> None:
        self._lock = asyncio.Lock()
        self._timeout_s = timeout_s
        event.listen(engine, "before_cursor_execute", self._before_execute)
        event.listen(engine, "checkin", self._checkin)

    def _before_execute(
        self,
        conn: Connection,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: ExecutionContext | None,
        executemany: bool,
    ) -> None:
        if self.KEY in conn.info or statement.lstrip()[:6].upper() not in _WRITES:
            return
        adapted = conn.connection.dbapi_connection
        # Inside SQLAlchemy's greenlet: run_async awaits the turn on the event loop.
        if adapted is not None and adapted.run_async(lambda _: self._take()):
            conn.info[self.KEY] = True

    async def _take(self) -> bool:
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._lock.acquire()
        except TimeoutError:
            return False  # a writer in this very task holds it: SQLite's busy timeout decides
        return True

    def _checkin(self, dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        if record.info.pop(self.KEY, False):
            self._lock.release()


@dataclass
class ServiceRuntime:
    """What a running service owns; reachable from routes as ``request.app.state.runtime``."""

    settings: ServiceSettings
    db: Database
    tokens: TokenCodec
    relay: OutboxRelay
    consumer: EventConsumer
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    # Taken by every transactional request (shared.web.TransactionalRoute).
    admission: contextlib.AbstractAsyncContextManager[Any] = field(
        default_factory=contextlib.nullcontext
    )

    def spawn(self, coro: Awaitable[Any], name: str) -> None:
        async def guarded() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background task %s stopped", name)

        self.tasks.append(asyncio.create_task(guarded(), name=name))


@contextlib.contextmanager
def settled_heap() -> Iterator[None]:
    """Run a started service's workload: what startup built (modules, metadata, the app) is
    frozen out of the collector's scans, and young objects are collected less often.

    A full collection over the startup heap stopped the process for 70-80 ms, a whole
    request's p99. Both are undone on exit.
    """
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def build_runtime(
    settings: ServiceSettings, subscriptions: Mapping[str, Subscription] | None = None
) -> ServiceRuntime:
    db = Database(settings.database_url)
    if db.is_sqlite:
        SqliteWriteTurns(db.sync_engine)
    bound = settings.max_concurrent_transactions or (
        SQLITE_CONCURRENT_TRANSACTIONS if db.is_sqlite else 0
    )
    return ServiceRuntime(
        settings=settings,
        db=db,
        tokens=TokenCodec(
            settings.jwt_secret.get_secret_value(), ttl=timedelta(minutes=settings.token_ttl_min)
        ),
        relay=OutboxRelay(db, settings),
        consumer=EventConsumer(db, settings, subscriptions or {}),
        admission=asyncio.Semaphore(bound) if bound else contextlib.nullcontext(),
    )


async def _create_topics_until_done(runtime: ServiceRuntime) -> None:
    domain = [t.name for t in DOMAIN_TOPICS]
    delay = 0.5
    while True:
        try:
            await ensure_topics(runtime.settings, domain)
            await ensure_topics(
                runtime.settings, [dlq_topic(runtime.settings.service_name)], partitions=3
            )
            return
        except Exception as exc:
            log.warning("topic creation failed, retrying in %.1fs: %r", delay, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


def shutdown_budget(settings: ServiceSettings) -> tuple[float, float]:
    """Split ``shutdown_grace_s`` into (HTTP drain, background stop) seconds.

    Uvicorn drains in-flight requests first (its ``timeout_graceful_shutdown``), then
    the lifespan stops the background work; both together stay within the grace.
    """
    drain = settings.shutdown_grace_s / 2
    return drain, settings.shutdown_grace_s - drain


async def _stop_background(runtime: ServiceRuntime, deadline: float, *, flush: bool) -> None:
    """Stop consumers and jobs, then the relay, then publish what they committed last.

    ``deadline`` is in event-loop time; nothing here waits past it.
    """
    loop = asyncio.get_running_loop()
    consumer = [t for t in runtime.tasks if t.get_name() == CONSUMER_TASK]
    if consumer:
        # Let the consumer finish its batch and commit offsets before anything is cancelled.
        runtime.consumer.request_stop()
        await asyncio.wait(consumer, timeout=max(0.1, (deadline - loop.time()) / 2))
    relay = [t for t in runtime.tasks if t.get_name() == RELAY_TASK]
    others = [t for t in runtime.tasks if t.get_name() != RELAY_TASK and not t.done()]
    # Consumers and jobs first: the events they commit while stopping still leave in the flush.
    for group in (others, relay):
        for task in group:
            task.cancel()
        if group:
            # Bounded: a library that ignores cancellation must not hold up the exit.
            _, stuck = await asyncio.wait(group, timeout=max(0.1, deadline - loop.time()))
            for task in stuck:
                log.warning("background task %s did not stop in time", task.get_name())
    runtime.tasks.clear()
    if not flush:
        return
    try:
        async with asyncio.timeout_at(deadline):
            while await runtime.relay.publish_batch() >= runtime.settings.relay_batch_size:
                pass
    except Exception as exc:
        # Nothing is lost: the rows stay pending and the next process publishes them.
        log.warning("outbox flush at shutdown incomplete: %r", exc)


async def _housekeeping(runtime: ServiceRuntime) -> None:
    ttl = timedelta(hours=runtime.settings.idempotency_ttl_h)
    while True:
        await asyncio.sleep(HOUSEKEEPING_INTERVAL_S)
        for name, purge in (
            ("sent outbox rows", runtime.relay.purge_sent(OUTBOX_RETENTION)),
            ("expired idempotency keys", idempotency.purge_expired(runtime.db, ttl)),
        ):
            try:
                removed = await purge
            except Exception as exc:
                log.warning("housekeeping: purging %s failed: %r", name, exc)
            else:
                log.info("housekeeping: purged %d %s", removed, name)


def create_service_app(
    settings: ServiceSettings,
    *,
    title: str,
    description: str,
    routers: Sequence[APIRouter],
    migrations: Path,
    subscriptions: Mapping[str, Subscription] | None = None,
    jobs: Sequence[ScheduledJob] = (),
    on_startup: Iterable[LifecycleHook] = (),
    on_shutdown: Iterable[LifecycleHook] = (),
    run_background: bool = True,
    middleware: Sequence[Middleware] = (),
    **fastapi_options: Any,
) -> FastAPI:
    """Build a service's FastAPI app.

    ``run_background=False`` leaves the relay, the consumer and the scheduled
    ``jobs`` off, so tests can drive them by hand. ``middleware`` runs inside the
    request context and the body-size limit, just before routing.
    """
    runtime = build_runtime(settings, subscriptions)
    hooks = list(on_startup)
    shutdown_hooks = list(on_shutdown)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            await upgrade(runtime.db, migrations)
        for hook in hooks:
            await hook(runtime)
        if run_background:
            runtime.spawn(_create_topics_until_done(runtime), "topics")
            runtime.spawn(runtime.relay.run(), RELAY_TASK)
            runtime.spawn(runtime.consumer.run(), CONSUMER_TASK)
            runtime.spawn(_housekeeping(runtime), "housekeeping")
            for job in jobs:
                runtime.spawn(run_forever(runtime.db, job), f"job:{job.name}")
        log.info("%s ready on %s:%s", settings.service_name, settings.host, settings.port)
        try:
            # Many apps start and stop in one test process: each hands the collector back.
            with settled_heap():
                yield
        finally:
            # Uvicorn has already drained HTTP (stopped listening, finished in-flight requests).
            loop = asyncio.get_running_loop()
            deadline = loop.time() + shutdown_budget(settings)[1]
            await _stop_background(runtime, deadline, flush=run_background)
            for hook in shutdown_hooks:
                await hook(runtime)
            # Leaving the consumer group at once hands its partitions to the other replicas.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(max(deadline, loop.time() + CLOSE_FLOOR_S)):
                    await asyncio.gather(runtime.consumer.close(), runtime.relay.close())
            await runtime.db.dispose()

    app = FastAPI(
        title=title,
        description=description,
        version="0.1.0",
        lifespan=lifespan,
        responses=PROBLEM_RESPONSES,
        **fastapi_options,
    )
    app.state.runtime = runtime
    app.state.tokens = runtime.tokens
    install_error_handlers(app)
    for inner in reversed(middleware):  # each add wraps the ones before it
        app.add_middleware(inner.cls, *inner.args, **inner.kwargs)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContextMiddleware, service=settings.service_name)
    for router in routers:
        app.include_router(router)
    add_operational_routes(app, runtime)
    return app


def add_operational_routes(app: FastAPI, runtime: ServiceRuntime) -> None:
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": runtime.settings.service_name}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(runtime.db.ping(), 2.0)
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unreachable: {type(exc).__name__}"
        reachable = await broker_reachable(runtime.settings.kafka_bootstrap_servers)
        checks["broker"] = "ok" if reachable else "unreachable"
        # Named with the service and its process, so a launcher tells its own process from
        # whatever else answers on that port (``Platform.wait_ready``).
        service, pid = runtime.settings.service_name, os.getpid()
        if all(v == "ok" for v in checks.values()):
            body = {"status": "ready", "service": service, "pid": pid, "checks": checks}
            return JSONResponse(body)
        detail = "A dependency is unreachable"
        return problem(
            503, code="not-ready", detail=detail, service=service, pid=pid, checks=checks
        )

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def configure_process_logging(settings: ServiceSettings) -> None:
    configure_logging(settings.service_name, settings.log_level, settings.log_json)
