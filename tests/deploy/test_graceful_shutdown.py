"""SIGTERM on real ``community serve`` processes: drain, refuse, commit, exit 0 within budget."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy import select

from shared.auth import Role
from shared.broker import LocalBroker, free_port
from shared.db import Database, inbox_table
from shared.events.contracts.members import MemberRegistered
from shared.events.envelope import CONTENT_TYPE, CloudEvent
from shared.events.registry import spec_of
from shared.events.topics import MEMBERS
from shared.settings import LOCAL_ADMIN_PASSWORD
from tests.conftest import Databases, auth, eventually

GRACE_S = 6.0
# Interpreter teardown after the budget; Kubernetes leaves more (terminationGracePeriodSeconds).
EXIT_MARGIN_S = 4.0


@dataclass
class Service:
    name: str
    url: str
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "shared.cli", "serve", self.name],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    async def ready(self) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=2.0) as client:

            async def answers() -> bool:
                assert self.process is not None
                assert self.process.poll() is None, self.log.read_text()[-3000:]
                try:
                    return (await client.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(answers, timeout_s=30.0)

    async def terminate(self) -> int:
        """SIGTERM, then the exit code; fails if the process outlives its budget."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(self.process.wait, GRACE_S + EXIT_MARGIN_S)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    async def refuses_connections(self) -> bool:
        host, port = self.url.removeprefix("http://").split(":")
        try:
            _, writer = await asyncio.open_connection(host, int(port))
        except ConnectionRefusedError:
            return True
        writer.close()
        return False


@pytest.fixture
async def service(
    databases: Databases, broker: LocalBroker, tmp_path: Path
) -> AsyncIterator[object]:
    started: list[Service] = []

    async def make(name: str) -> Service:
        port = free_port()
        prefix = name.upper()
        env = {
            **os.environ,
            "COMMUNITY_DATA_DIR": str(tmp_path),
            "COMMUNITY_SHUTDOWN_GRACE_S": str(GRACE_S),
            "COMMUNITY_LOG_JSON": "false",
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            f"{prefix}_HOST": "127.0.0.1",
            f"{prefix}_PORT": str(port),
            f"{prefix}_DATABASE_URL": await databases.new(name),
        }
        svc = Service(name, f"http://127.0.0.1:{port}", env, tmp_path / f"{name}.log")
        started.append(svc)
        svc.start()
        await svc.ready()
        return svc

    yield make
    for svc in started:
        svc.kill()


async def test_sigterm_finishes_the_in_flight_request_refuses_new_ones_and_exits_zero(
    service: object,
) -> None:
    gateway: Service = await service("gateway")  # type: ignore[operator]
    headers_sent = asyncio.Event()
    release = asyncio.Event()

    async def slow_form() -> AsyncIterator[bytes]:
        # A client still uploading its body: the request is in flight until the last chunk.
        yield b"grant_type=password&username=admin"
        headers_sent.set()
        await release.wait()
        yield f"&password={LOCAL_ADMIN_PASSWORD}".encode()

    async with httpx.AsyncClient(base_url=gateway.url, timeout=30.0) as client:
        in_flight = asyncio.create_task(
            client.post(
                "/v1/auth/token",
                content=slow_form(),
                headers={"content-type": "application/x-www-form-urlencoded"},
            )
        )
        await headers_sent.wait()
        # A round trip on a second connection: the server has read the first one's headers.
        async with httpx.AsyncClient(base_url=gateway.url) as other:
            assert (await other.get("/healthz")).status_code == 200

        assert gateway.process is not None
        exited = asyncio.create_task(gateway.terminate())
        await eventually(gateway.refuses_connections, timeout_s=GRACE_S)
        assert not exited.done(), "exited before the in-flight request finished"
        release.set()
        response = await in_flight

    assert response.status_code == 200, response.text
    assert response.json()["access_token"]
    assert await exited == 0, gateway.log.read_text()[-3000:]


def registrations(count: int) -> list[CloudEvent]:
    events = []
    for n in range(count):
        data = MemberRegistered(
            member_id=str(uuid.uuid4()),
            nickname=f"fan {n}",
            channel="app",
            registered_at=datetime.now(UTC),
        )
        spec = spec_of(data)
        events.append(
            CloudEvent(
                source="/services/members",
                type=spec.name,
                subject=data.member_id,
                schemaversion=spec.version,
                partitionkey=data.member_id,
                data=data.model_dump(mode="json"),
            )
        )
    return events


async def publish(broker: LocalBroker, events: list[CloudEvent]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for event in events:
            assert event.subject is not None
            await producer.send_and_wait(
                MEMBERS.name,
                value=event.to_json(),
                key=event.subject.encode(),
                headers=[("content-type", CONTENT_TYPE.encode())],
            )
    finally:
        await producer.stop()


async def partitions(broker: LocalBroker) -> list[TopicPartition]:
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers)
    await producer.start()
    try:
        return [
            TopicPartition(MEMBERS.name, p) for p in await producer.partitions_for(MEMBERS.name)
        ]
    finally:
        await producer.stop()


async def committed_offsets(broker: LocalBroker, group: str) -> dict[TopicPartition, int]:
    """The group's committed offsets, read without joining the group."""
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap_servers, group_id=group)
    await consumer.start()
    try:
        return {tp: await consumer.committed(tp) or 0 for tp in await partitions(broker)}
    finally:
        await consumer.stop()


async def event_positions(broker: LocalBroker, count: int) -> dict[str, tuple[TopicPartition, int]]:
    """Where each event sits in the topic: event id -> (partition, offset)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap_servers)
    await consumer.start()
    positions: dict[str, tuple[TopicPartition, int]] = {}
    try:
        consumer.assign(await partitions(broker))
        await consumer.seek_to_beginning()
        while len(positions) < count:
            batches = await consumer.getmany(timeout_ms=5000)
            assert batches, f"only {len(positions)} of {count} events in the topic"
            for tp, records in batches.items():
                for record in records:
                    assert record.value is not None
                    positions[CloudEvent.from_json(record.value).id] = (tp, record.offset)
    finally:
        await consumer.stop()
    return positions


async def test_sigterm_mid_stream_commits_only_processed_offsets_and_exits_zero(
    service: object, broker: LocalBroker
) -> None:
    analytics: Service = await service("analytics")  # type: ignore[operator]
    db = Database(analytics.env["ANALYTICS_DATABASE_URL"])
    events = registrations(40)

    async def processed() -> set[str]:
        async with db.session() as session:
            rows = await session.scalars(
                select(inbox_table.c.event_id).where(inbox_table.c.consumer == "analytics")
            )
            return set(rows)

    async def committed_count() -> int:
        return sum((await committed_offsets(broker, "analytics")).values())

    try:
        await publish(broker, events[:20])
        await eventually(lambda: _equals(committed_count(), 20), timeout_s=30.0)
        async with httpx.AsyncClient(base_url=analytics.url) as client:
            overview = await client.get("/v1/metrics/overview", headers=auth(Role.OPERATOR))
        assert overview.status_code == 200, overview.text
        assert overview.json()["members"]["total"] == 20

        # The second burst is in the consumer's hands when the signal arrives.
        await publish(broker, events[20:])
        assert await analytics.terminate() == 0, analytics.log.read_text()[-3000:]

        done = await processed()
        assert done <= {e.id for e in events}
        committed = await committed_offsets(broker, "analytics")
        assert sum(committed.values()) >= 20
        # At least once across the stop: every offset below a committed one was processed,
        # so nothing the group will skip on restart is lost (the inbox absorbs the rest).
        skipped = {
            event_id
            for event_id, (tp, offset) in (await event_positions(broker, 40)).items()
            if offset < committed[tp]
        }
        assert skipped <= done
    finally:
        await db.dispose()


async def _equals(value: object, expected: int) -> bool:
    return await value == expected  # type: ignore[misc]
