"""Real parts only: a Tansu broker on a free port and real databases (SQLite, PostgreSQL).

Every test that asks for ``database_url`` runs once per database lane: SQLite
always, PostgreSQL when 127.0.0.1:5432 answers. With ``CI=true`` an unreachable
PostgreSQL or broker fails the run instead of shrinking it.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from shared.app import ServiceRuntime
from shared.auth import Principal, Role, TokenCodec
from shared.broker import LocalBroker, port_open
from shared.events.envelope import CloudEvent
from shared.events.registry import EventData, spec_of
from shared.settings import LOCAL_JWT_SECRET, ServiceSettings

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_HOST, PG_PORT = os.environ.get("PGHOST", "127.0.0.1"), int(os.environ.get("PGPORT", "5432"))
PG_ADMIN_URL = f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/postgres"


def _lanes() -> list[str]:
    lanes = ["sqlite"]
    if os.environ.get("COMMUNITY_TEST_LANES"):
        return os.environ["COMMUNITY_TEST_LANES"].split(",")
    if port_open(PG_HOST, PG_PORT, 1.0):
        lanes.append("postgresql")
    elif IN_CI:
        raise pytest.UsageError(f"CI=true but PostgreSQL at {PG_HOST}:{PG_PORT} is unreachable")
    return lanes


LANES = _lanes()


def pytest_report_header() -> str:
    return f"database lanes: {', '.join(LANES)}"


# Tests that start the platform as processes, fire thousands of requests or fuzz a whole
# API: `make test` (pytest-xdist, --dist loadgroup) runs them one after another on one
# worker while the other worker takes the rest, so two of them never compete for the cores.
# tests/test_xdist_groups.py is not heavy: it is here to check the grouping on itself too.
HEAVY = (
    "tests/e2e/",
    "tests/chaos/",
    "tests/fuzz/",
    "tests/campaigns/test_flash_sale.py",
    "tests/test_xdist_groups.py",
)


# First: xdist reads the group marks in its own hook of this name, to suffix node ids with
# "@heavy"; marks added after it are ignored and the group is split across workers.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.startswith(HEAVY):
            item.add_marker(pytest.mark.xdist_group("heavy"))


@pytest.fixture(scope="session", params=LANES)
def db_lane(request: pytest.FixtureRequest) -> str:
    lane: str = request.param
    return lane


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """A broker of the test's own: Tansu starts in well under a second and keeps nothing."""
    with LocalBroker(log_path=tmp_path / "broker.log") as running:
        yield running


async def create_pg_database(name: str) -> None:
    engine = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await engine.dispose()


async def drop_pg_database(name: str) -> None:
    engine = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await engine.dispose()


def pg_url(name: str) -> str:
    return f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{name}"


class Databases:
    """Hands out fresh, empty databases of one lane; drops them at the end."""

    def __init__(self, lane: str, tmp: Path) -> None:
        self.lane = lane
        self.tmp = tmp
        self._created: list[str] = []

    async def new(self, label: str) -> str:
        if self.lane == "sqlite":
            return f"sqlite+aiosqlite:///{self.tmp / f'{label}-{uuid.uuid4().hex[:8]}.db'}"
        name = f"t_{label}_{uuid.uuid4().hex[:10]}"
        await create_pg_database(name)
        self._created.append(name)
        return pg_url(name)

    async def drop_all(self) -> None:
        for name in self._created:
            await drop_pg_database(name)
        self._created.clear()


@pytest.fixture
async def databases(db_lane: str, tmp_path: Path) -> AsyncIterator[Databases]:
    dbs = Databases(db_lane, tmp_path)
    yield dbs
    await dbs.drop_all()


@pytest.fixture(params=[lane for lane in LANES if lane == "postgresql"])
async def pg_databases(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Databases]:
    """For behaviour only PostgreSQL has (several replicas on one database).

    Generated only when the PostgreSQL lane exists, which CI guarantees.
    """
    dbs = Databases(request.param, tmp_path)
    yield dbs
    await dbs.drop_all()


def settings_for(
    cls: type[ServiceSettings], broker: LocalBroker, database_url: str, **overrides: Any
) -> Any:
    values: dict[str, Any] = {
        "database_url": database_url,
        "kafka_bootstrap_servers": broker.bootstrap_servers,
        "relay_poll_interval_s": 0.05,
        "consumer_retry_backoff_s": 0.01,
        "log_json": False,
    }
    values.update(overrides)
    return cls.model_validate(values)


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan (migrations, relay, consumer) and talk to it in-process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


def token_for(role: Role, subject: str | None = None, **kwargs: Any) -> str:
    codec = TokenCodec(LOCAL_JWT_SECRET)
    return codec.issue(Principal(subject=subject or str(uuid.uuid4()), role=role, **kwargs))


def auth(role: Role, subject: str | None = None, **kwargs: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(role, subject, **kwargs)}"}


async def read_topic(
    broker: LocalBroker, topic: str, count: int, timeout_s: float = 10.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """The first ``count`` records of ``topic`` (fewer if they do not arrive in time)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=f"reader-{uuid.uuid4().hex[:8]}",
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        while len(records) < count:
            batch = await consumer.getmany(timeout_ms=int(timeout_s * 1000))
            if not batch:
                break
            records += [r for part in batch.values() for r in part]
    finally:
        await consumer.stop()
    return records[:count]


async def eventually(check: Any, timeout_s: float = 20.0, interval_s: float = 0.05) -> Any:
    """Poll an async ``check`` until it returns a truthy value; fail with its last answer."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    last: Any = None
    while asyncio.get_running_loop().time() < deadline:
        last = check()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval_s)
    raise AssertionError(f"condition not met in {timeout_s}s; last value: {last!r}")


def record_of(
    data: EventData, subject: str, *, source: str = "/tests", offset: int = 0
) -> ConsumerRecord[bytes, bytes]:
    """A Kafka record carrying ``data`` exactly as the outbox relay would publish it."""
    spec = spec_of(data)
    event = CloudEvent(
        source=source,
        type=spec.name,
        subject=subject,
        partitionkey=subject,
        data=data.model_dump(mode="json"),
    )
    return ConsumerRecord(
        topic=spec.topic.name,
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=subject.encode(),
        value=event.to_json(),
        checksum=None,
        serialized_key_size=len(subject),
        serialized_value_size=0,
        headers=(),
    )


async def deliver(runtime: ServiceRuntime, *records: ConsumerRecord[bytes, bytes]) -> None:
    """Hand records to the service's real consumer path (inbox, handler, transaction)."""
    for record in records:
        await runtime.consumer.handle(record)
