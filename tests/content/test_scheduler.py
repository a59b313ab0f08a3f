"""The content calendar's scheduler: due posts are published once, however many replicas run."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlalchemy import exc as sa_exc
from sqlalchemy import select, update

from services.content.app import MIGRATIONS
from services.content.jobs import publish_job
from services.content.models import Post
from shared.db import Database, outbox_table
from shared.events.envelope import CloudEvent
from shared.migrations import upgrade
from shared.scheduler import run_once
from tests.conftest import Databases
from tests.content.conftest import Content, article

JOB = publish_job(0.01)


async def make_due(db: Database, post_id: str) -> None:
    """Time passes: move the post's slot into the past."""
    async with db.session() as session:
        await session.execute(
            update(Post)
            .where(Post.id == post_id)
            .values(publish_at=datetime.now(UTC) - timedelta(seconds=1))
        )


async def test_a_scheduled_post_is_published_once_when_due(own_content: Content) -> None:
    content = own_content
    community = await content.community()
    _, headers = await content.member_in(community)
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    post = await content.post(headers, article(community, publish_at=later))
    assert post["status"] == "scheduled"
    feed = (await content.client.get(f"/v1/posts?community_id={community}", headers=headers)).json()
    assert feed["items"] == []
    assert await run_once(content.runtime.db, JOB) == 0  # not due yet
    await make_due(content.runtime.db, post["id"])
    assert await run_once(content.runtime.db, JOB) == 1
    assert await run_once(content.runtime.db, JOB) == 0
    published = await content.get_post(post["id"], headers)
    assert published["status"] == "published"
    assert published["published_at"] is not None
    [event] = await content.events("post.published")
    assert event.data["post_id"] == post["id"]
    feed = (await content.client.get(f"/v1/posts?community_id={community}", headers=headers)).json()
    assert [p["id"] for p in feed["items"]] == [post["id"]]


async def test_rescheduling_moves_the_slot_and_a_past_slot_is_refused(own_content: Content) -> None:
    content = own_content
    community = await content.community()
    _, headers = await content.member_in(community)
    later = datetime.now(UTC) + timedelta(hours=2)
    post = await content.post(headers, article(community, publish_at=later.isoformat()))
    path = f"/v1/posts/{post['id']}"
    moved = await content.client.patch(
        path, json={"publish_at": (later + timedelta(days=1)).isoformat()}, headers=headers
    )
    assert moved.status_code == 200
    past = await content.client.patch(
        path,
        json={"publish_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat()},
        headers=headers,
    )
    assert past.status_code == 422


async def seed_scheduled(db: Database, count: int) -> list[str]:
    now = datetime.now(UTC)
    community = str(uuid.uuid4())
    posts = [
        Post(
            id=str(uuid.uuid4()),
            community_id=community,
            author_id=str(uuid.uuid4()),
            author_kind="member",
            type="article",
            status="scheduled",
            title=None,
            body=f"post {n}",
            payload={},
            tags=[],
            origin="original",
            publish_at=now - timedelta(seconds=1),
            created_at=now,
            updated_at=now,
        )
        for n in range(count)
    ]
    async with db.session() as session:
        session.add_all(posts)
    return [p.id for p in posts]


async def test_two_replicas_publish_each_due_post_exactly_once(pg_databases: Databases) -> None:
    url = await pg_databases.new("content_sched")
    replicas = [Database(url) for _ in range(2)]
    try:
        await upgrade(replicas[0], MIGRATIONS)
        ids = await seed_scheduled(replicas[0], 300)
        job = publish_job(0.01, batch_size=20)  # small batches: the replicas interleave

        async def replica(db: Database) -> int:
            handled = 0
            while True:
                try:
                    n = await run_once(db, job)
                except sa_exc.DBAPIError:  # a serialisation hiccup: the tick rolls back whole
                    continue
                handled += n
                if n == 0:
                    return handled

        counts = await asyncio.gather(*(replica(db) for db in replicas))
        assert sum(counts) == len(ids)
        async with replicas[0].session() as session:
            statuses = Counter((await session.scalars(select(Post.status))).all())
            payloads = (
                await session.scalars(
                    select(outbox_table.c.payload).where(outbox_table.c.type == "post.published")
                )
            ).all()
        assert statuses == {"published": len(ids)}
        published = Counter(CloudEvent.from_json(p).data["post_id"] for p in payloads)
        assert sorted(published) == sorted(ids)
        assert set(published.values()) == {1}
    finally:
        for db in replicas:
            with contextlib.suppress(Exception):
                await db.dispose()
