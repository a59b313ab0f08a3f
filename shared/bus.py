"""The Kafka side: producers, topic creation and a broker reachability probe."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from shared.settings import ServiceSettings

log = logging.getLogger(__name__)

TOPIC_ALREADY_EXISTS = 36
# How often relay and consumers check that the broker is still there.
BROKER_PROBE_INTERVAL_S = 1.0


def new_producer(settings: ServiceSettings, *, client_id: str) -> AIOKafkaProducer:
    # Idempotence is a setting: Tansu's memory broker refuses InitProducerId.
    # Correctness never depends on it: consumers dedupe by event id.
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=settings.kafka_enable_idempotence,
        linger_ms=5,
        request_timeout_ms=10000,
        retry_backoff_ms=200,
    )


async def ensure_topics(
    settings: ServiceSettings, topics: Iterable[str], *, partitions: int | None = None
) -> None:
    """Create ``topics`` with explicit partition counts; existing ones are left alone."""
    count = partitions or settings.kafka_topic_partitions
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        replicas = settings.kafka_replication_factor
        wanted = [
            NewTopic(name, num_partitions=count, replication_factor=replicas) for name in topics
        ]
        response = await admin.create_topics(wanted)
        for name, code, message in response.topic_errors:
            if code not in (0, TOPIC_ALREADY_EXISTS):
                raise KafkaError(f"creating topic {name} failed: {code} {message}")
    finally:
        await admin.close()


def really_cancelled() -> bool:
    """True when our own task is being cancelled, not one of aiokafka's internal futures.

    aiokafka lets an internal ``CancelledError`` escape when its coordinator dies;
    a loop that took that for its own cancellation would stop for good.
    """
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _probe(server: str, timeout_s: float) -> str:
    host, _, port = server.strip().rpartition(":")
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host.strip("[]"), int(port)), timeout_s
        )
    except TimeoutError:
        return "timeout"
    except (OSError, ValueError):
        return "refused"
    writer.close()
    return "open"


async def broker_reachable(bootstrap_servers: str, timeout_s: float = 1.0) -> bool:
    """True when one bootstrap server accepts a TCP connection (for readiness)."""
    for server in bootstrap_servers.split(","):
        if await _probe(server, timeout_s) == "open":
            return True
    return False


async def broker_down(bootstrap_servers: str, timeout_s: float = 2.0) -> bool:
    """True only when every bootstrap server refuses connections.

    A slow answer is not "down": on a loaded machine that would rebuild healthy
    clients for nothing. A refused connection is what a stopped broker gives.
    """
    for server in bootstrap_servers.split(","):
        if await _probe(server, timeout_s) != "refused":
            return False
    return True


async def stop_quietly(*clients: Any, timeout_s: float = 5.0) -> None:
    """Stop Kafka clients without ever hanging the caller.

    Unlike ``wait_for``, cancelling the caller does not wait for a ``stop()``
    that ignores cancellation: the stops go on in the background.
    """
    tasks = {asyncio.ensure_future(c.stop()) for c in clients if c is not None}
    if not tasks:
        return
    done, _ = await asyncio.wait(tasks, timeout=timeout_s)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            log.debug("kafka client stop failed: %r", task.exception())
