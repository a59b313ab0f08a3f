"""The broker is SIGKILLed and restarted mid-burst of writes: nothing committed is lost.

A real members process takes a burst of registrations while its Tansu broker
(durable S3 storage, see processes.py) is killed and started again on the same
port. Afterwards every committed outbox row is on its topic, byte for byte.
This fails if the relay ever marks a row sent that the broker did not
acknowledge (the row would be lost with the dead broker) or gives up on rows
written while the broker was away.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared.broker import LocalBroker
from shared.events.envelope import CloudEvent
from tests.chaos.processes import (
    count,
    durable_broker,
    fast_service_env,
    s3_server,
    service_processes,
)
from tests.conftest import Databases, eventually

# Writes at full speed before the crash and again after the restart.
FAST_WRITES = 100
WORKERS = 8
# The broker stays down longer than the producer's own delivery timeout
# (``request_timeout_ms`` in shared/bus.py), so records the relay handed to the
# producer but the broker never acknowledged are really dropped: a relay that
# marked them sent would lose them for good.
OUTAGE_S = 12.0
# Each writer's pause between writes while the broker is down (keeps the burst going).
OUTAGE_PACE_S = 0.5
PENDING = "SELECT count(*) FROM outbox WHERE sent_at IS NULL"
SENT = "SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL"


@pytest.fixture
async def members_db(databases: Databases) -> AsyncIterator[tuple[str, AsyncEngine]]:
    url = await databases.new("chaos_members")
    engine = create_async_engine(url)
    yield url, engine
    await engine.dispose()


@pytest.fixture
def durable(tmp_path: Path) -> Iterator[LocalBroker]:
    """A broker whose topics, records and offsets survive a SIGKILL (S3 storage)."""
    with (
        s3_server(tmp_path / "s3.log") as s3_env,
        durable_broker(tmp_path / "broker.log", s3_env) as broker,
    ):
        yield broker


async def burst_with_broker_restart(
    base_url: str, broker: LocalBroker, engine: AsyncEngine
) -> tuple[list[int], list[str], int, int]:
    """Register members without pause; SIGKILL the broker and start it again mid-burst.

    Returns the statuses, the registered ids, the rows already sent when the broker
    died, and the rows still pending when it came back.
    """
    statuses: list[int] = []
    ids: list[str] = []
    numbers = itertools.count()
    broker_down = asyncio.Event()
    done = asyncio.Event()

    async def register(client: httpx.AsyncClient) -> None:
        while not done.is_set():
            response = await client.post("/v1/members", json={"nickname": f"b{next(numbers)}"})
            statuses.append(response.status_code)
            if response.status_code == 201:
                ids.append(response.json()["id"])
            if broker_down.is_set():
                await asyncio.sleep(OUTAGE_PACE_S)

    async def reached(writes: int) -> None:
        await eventually(lambda: len(statuses) >= writes, timeout_s=60, interval_s=0.005)

    async def crash_and_restart() -> tuple[int, int]:
        await reached(FAST_WRITES)
        # The crash must land mid-stream: some events published, more to come. On a loaded
        # machine the relay's first publish can come after the first fast writes.
        await eventually(lambda: count(engine, SENT), timeout_s=60)
        await asyncio.to_thread(broker.kill)
        broker_down.set()
        sent_before_crash = await count(engine, SENT)
        await asyncio.sleep(OUTAGE_S)
        pending_at_restart = await count(engine, PENDING)
        await asyncio.to_thread(broker.start)
        broker_down.clear()
        await reached(len(statuses) + FAST_WRITES)
        done.set()
        return sent_before_crash, pending_at_restart

    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        chaos = asyncio.create_task(crash_and_restart())
        await asyncio.gather(*(register(client) for _ in range(WORKERS)))
        sent_before_crash, pending_at_restart = await chaos
    return statuses, ids, sent_before_crash, pending_at_restart


async def read_all(broker: LocalBroker, topics: set[str], wanted: set[str]) -> dict[str, bytes]:
    """Every record on ``topics`` by event id, from the start, until ``wanted`` are all seen."""
    consumer = AIOKafkaConsumer(
        *sorted(topics),
        bootstrap_servers=broker.bootstrap_servers,
        group_id=f"chaos-reader-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen: dict[str, bytes] = {}
    try:
        idle = 0
        while not wanted <= seen.keys() and idle < 10:
            batches = await consumer.getmany(timeout_ms=1000)
            idle = 0 if batches else idle + 1
            for records in batches.values():
                for record in records:
                    value = record.value or b""
                    seen.setdefault(CloudEvent.from_json(value).id, value)
    finally:
        await consumer.stop()
    return seen


async def test_a_broker_killed_mid_burst_loses_no_committed_event(
    members_db: tuple[str, AsyncEngine], durable: LocalBroker, tmp_path: Path
) -> None:
    url, engine = members_db
    env = fast_service_env("members", url)
    with service_processes(tmp_path, durable, ("members",), env) as platform:
        statuses, ids, sent_before_crash, pending_at_restart = await burst_with_broker_restart(
            platform.url("members"), durable, engine
        )
        # Writes never wait for the broker: the outbox takes them while it is down.
        assert set(statuses) == {201}, sorted(set(statuses))
        assert sent_before_crash > 0, "nothing reached the broker before it died"
        assert pending_at_restart > 0, "the broker was never missed"
        await eventually(lambda: drained(engine), timeout_s=60)
    async with engine.connect() as conn:
        committed = {
            row.event_id: row
            for row in await conn.exec_driver_sql(
                "SELECT event_id, topic, key, type, payload FROM outbox"
            )
        }
    published = await read_all(durable, {r.topic for r in committed.values()}, set(committed))
    assert {r.key for r in committed.values() if r.type == "member.registered"} == set(ids)
    missing = set(committed) - set(published)
    assert not missing, f"{len(missing)} of {len(committed)} committed events never reached Kafka"
    for event_id, row in committed.items():
        assert published[event_id] == row.payload.encode(), event_id


async def drained(engine: AsyncEngine) -> bool:
    return await count(engine, PENDING) == 0
