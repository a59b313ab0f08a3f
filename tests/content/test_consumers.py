"""The replica of communities and roles, erasure, and one trip through the real broker."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from services.content.app import create_app
from services.content.settings import ContentSettings
from shared.auth import Role
from shared.broker import LocalBroker
from shared.bus import new_producer
from shared.events.contracts.members import (
    CommunityCreated,
    MemberErased,
    MemberLeftCommunity,
    MemberRoleChanged,
)
from shared.events.envelope import CloudEvent
from shared.events.topics import CONTENT, MEMBERS
from tests.conftest import Databases, auth, eventually, read_topic, running, settings_for
from tests.content.conftest import Content, article, deliver


def role_changed(community: str, member: str, role: str, previous: str) -> MemberRoleChanged:
    return MemberRoleChanged(
        community_id=community,
        member_id=member,
        role=role,
        previous_role=previous,
        changed_by="someone",
        changed_at=datetime.now(UTC),
    )


async def calendar_status(content: Content, community: str, headers: dict[str, str]) -> int:
    today = datetime.now(UTC).date().isoformat()
    response = await content.client.get(
        f"/v1/posts/calendar?community_id={community}&from={today}&to={today}", headers=headers
    )
    return response.status_code


async def test_the_owner_from_community_created_moderates(content: Content) -> None:
    owner = str(uuid.uuid4())
    community = await content.community(owner_id=owner)
    assert await calendar_status(content, community, auth(Role.MEMBER, owner)) == 200
    assert await calendar_status(content, community, auth(Role.MEMBER)) == 403


async def test_role_changes_grant_and_take_moderation_and_redelivery_changes_nothing(
    content: Content,
) -> None:
    community = await content.community()
    member, headers = await content.member_in(community)
    assert await calendar_status(content, community, headers) == 403
    promoted = str(uuid.uuid4())
    await deliver(content.runtime, role_changed(community, member, "moderator", "member"), promoted)
    assert await calendar_status(content, community, headers) == 200
    await deliver(content.runtime, role_changed(community, member, "member", "moderator"))
    assert await calendar_status(content, community, headers) == 403
    # The broker delivers the promotion again: the inbox has it, so the demotion stands.
    await deliver(content.runtime, role_changed(community, member, "moderator", "member"), promoted)
    assert await calendar_status(content, community, headers) == 403


async def test_a_member_who_left_can_no_longer_post(content: Content) -> None:
    community = await content.community()
    member, headers = await content.member_in(community)
    await content.post(headers, article(community))
    await deliver(
        content.runtime,
        MemberLeftCommunity(community_id=community, member_id=member, left_at=datetime.now(UTC)),
    )
    response = await content.client.post(
        "/v1/posts", json=article(community, body="again"), headers=headers
    )
    assert response.status_code == 403


async def test_the_community_timezone_decides_the_day_of_a_view(content: Content) -> None:
    community = await content.community(timezone="Pacific/Kiritimati")  # UTC+14
    _, headers = await content.member_in(community)
    post = await content.post(headers, article(community))
    view = await content.client.post(f"/v1/posts/{post['id']}/views", json={}, headers=headers)
    expected = (datetime.now(UTC) + timedelta(hours=14)).date().isoformat()
    assert view.json()["day"] == expected


async def test_erasure_scrubs_text_and_media_but_keeps_ids_and_counters(content: Content) -> None:
    community = await content.community()
    member, headers = await content.member_in(community)
    _, fan = await content.member_in(community)
    video = await content.post(
        headers,
        {
            "type": "video",
            "community_id": community,
            "title": "My kitchen tour",
            "body": "Our flat in Pudong",
            "media_url": "https://cdn.example.com/me.mp4",
            "duration_s": 60,
        },
    )
    other = await content.post(fan, article(community, body="unrelated"))
    await content.client.post(f"/v1/posts/{video['id']}/reactions", json={}, headers=fan)
    comment = await content.client.post(
        f"/v1/posts/{other['id']}/comments", json={"body": "I live next door"}, headers=headers
    )
    await deliver(content.runtime, MemberErased(member_id=member, erased_at=datetime.now(UTC)))
    scrubbed = await content.get_post(video["id"], fan)
    assert scrubbed["id"] == video["id"]
    assert scrubbed["author_id"] == member
    assert scrubbed["title"] == scrubbed["body"] == "[removed at the author's request]"
    assert scrubbed["payload"]["media_url"] is None
    assert scrubbed["counters"]["likes"] == 1
    comments = (await content.client.get(f"/v1/posts/{other['id']}/comments", headers=fan)).json()
    [scrubbed_comment] = comments["items"]
    assert scrubbed_comment["id"] == comment.json()["id"]
    assert scrubbed_comment["body"] == "[removed at the author's request]"
    assert (await content.get_post(other["id"], fan))["body"] == "unrelated"


async def test_a_community_announced_on_the_broker_takes_posts_that_reach_the_broker(
    databases: Databases, broker: LocalBroker
) -> None:
    settings = settings_for(ContentSettings, broker, await databases.new("content"))
    app = create_app(settings)
    community = str(uuid.uuid4())
    owner = str(uuid.uuid4())
    created = CommunityCreated(
        community_id=community,
        name="Tea lovers",
        owner_id=owner,
        visibility="public",
        created_at=datetime.now(UTC),
    )
    envelope = CloudEvent(
        source="/services/members",
        type="community.created",
        subject=community,
        data=created.model_dump(mode="json"),
    )
    async with running(app) as client:
        producer = new_producer(settings, client_id="test-members")
        await producer.start()
        try:
            await producer.send_and_wait(MEMBERS.name, envelope.to_json(), key=community.encode())
        finally:
            await producer.stop()
        headers = auth(Role.MEMBER, owner)

        async def posted() -> bool:
            response = await client.post("/v1/posts", json=article(community), headers=headers)
            return response.status_code == 201

        await eventually(posted, timeout_s=30, interval_s=0.2)
        [record] = await read_topic(broker, CONTENT.name, 1)
    event = CloudEvent.from_json(record.value or b"")
    assert event.type == "post.published"
    assert event.data["community_id"] == community
