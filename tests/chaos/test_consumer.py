"""A consumer is SIGKILLed while it works through a backlog: after a restart each event counts once.

Analytics is the consumer: its view counters are purely additive, so an event
applied twice shows as a count above the number of events, and an event lost
(an offset committed before its effect) as one below. The backlog is published
first; its tail repeats the second half of the events (as a relay retry after
a broker error sends them again), so the dedupe is exercised whether or not
the kill lands between a batch's database commit and its offset commit, while
events near the head, where the kill lands, have no second copy that could
hide a loss. The service is killed as soon as its counters start to rise,
restarted, and checked once its consumer group has committed every offset.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from services.analytics.settings import AnalyticsSettings
from shared.broker import LocalBroker
from shared.bus import ensure_topics
from shared.db import utcnow
from shared.events.contracts.content import PostViewed
from shared.events.envelope import CloudEvent
from shared.events.registry import lookup, spec_of
from shared.runner import Platform
from tests.chaos.processes import count, fast_service_env, restart_service, service_processes
from tests.conftest import Databases, eventually, settings_for

EVENTS = 4000  # distinct events; the second half of them is sent twice
POSTS = 60
COMMUNITIES = 3
TOPIC = lookup("post.viewed").topic.name
PLATFORM_VIEWS = (
    "SELECT coalesce(sum(value), 0) FROM daily_counters "
    "WHERE scope = '' AND metric = 'views' AND dimension = ''"
)
POST_VIEWS = "SELECT coalesce(sum(views), 0) FROM post_stats"
INBOX = "SELECT count(*) FROM inbox WHERE consumer = 'analytics'"


@pytest.fixture
async def analytics_db(databases: Databases) -> AsyncIterator[tuple[str, AsyncEngine]]:
    url = await databases.new("chaos_analytics")
    engine = create_async_engine(url)
    yield url, engine
    await engine.dispose()


async def count_once_migrated(engine: AsyncEngine, sql: str) -> int:
    """Zero while the starting service has not created its tables yet."""
    try:
        return await count(engine, sql)
    except DBAPIError:
        return 0


async def publish_views(broker: LocalBroker, settings: AnalyticsSettings) -> None:
    """``EVENTS`` post views over posts (keys) and communities; the later half sent twice."""
    await ensure_topics(settings, [TOPIC])
    posts = [(str(uuid.uuid4()), f"community-{n % COMMUNITIES}") for n in range(POSTS)]
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, linger_ms=20)
    await producer.start()
    try:
        events: list[tuple[str, bytes]] = []
        for n in range(EVENTS):
            post_id, community_id = posts[n % POSTS]
            data = PostViewed(
                post_id=post_id,
                community_id=community_id,
                member_id=str(uuid.uuid4()),
                post_author_id=str(uuid.uuid4()),
                viewed_at=utcnow(),
            )
            spec = spec_of(data)
            event = CloudEvent(
                source="/services/content",
                type=spec.name,
                subject=post_id,
                schemaversion=spec.version,
                partitionkey=post_id,
                data=data.model_dump(mode="json"),
            )
            events.append((post_id, event.to_json()))
        sends = [
            await producer.send(TOPIC, value, key=key.encode())
            for key, value in events + events[EVENTS // 2 :]
        ]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


async def kill_while_applying(platform: Platform, engine: AsyncEngine) -> int:
    """SIGKILL analytics once its first batch has committed; the views applied by then."""
    await eventually(
        lambda: count_once_migrated(engine, PLATFORM_VIEWS), timeout_s=90, interval_s=0.01
    )
    platform.kill_service("analytics")
    return await count(engine, PLATFORM_VIEWS)


async def group_caught_up(broker: LocalBroker, group: str) -> bool:
    """True when ``group`` has committed the end offset of every partition of the topic."""
    reader = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap_servers)
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    await reader.start()
    await admin.start()
    try:
        partitions = [TopicPartition(TOPIC, p) for p in reader.partitions_for_topic(TOPIC) or ()]
        ends = await reader.end_offsets(partitions)
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
    finally:
        await admin.close()
        await reader.stop()
    caught_up = (tp in committed and committed[tp].offset >= end for tp, end in ends.items())
    return bool(ends) and all(caught_up)


async def test_a_consumer_killed_mid_batch_applies_every_event_exactly_once(
    analytics_db: tuple[str, AsyncEngine], broker: LocalBroker, tmp_path: Path
) -> None:
    url, engine = analytics_db
    await publish_views(broker, settings_for(AnalyticsSettings, broker, url))
    env = fast_service_env("analytics", url)
    with service_processes(tmp_path, broker, (), env) as platform:
        platform.start_service("analytics")
        applied_at_kill = await kill_while_applying(platform, engine)
        assert 0 < applied_at_kill < EVENTS, "the kill did not land while the backlog was applied"
        restart_service(platform, "analytics")
        await eventually(lambda: group_caught_up(broker, "analytics"), timeout_s=90, interval_s=0.5)
        assert await count(engine, INBOX) == EVENTS
        assert await count(engine, PLATFORM_VIEWS) == EVENTS
        assert await count(engine, POST_VIEWS) == EVENTS
