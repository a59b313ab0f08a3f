"""Through the real broker: members' events feed the replicas; check-ins leave on the bus."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from services.campaigns.app import create_app
from services.campaigns.settings import CampaignsSettings
from shared.auth import Role
from shared.broker import LocalBroker
from shared.bus import new_producer
from shared.events.contracts.members import CommunityCreated, MemberJoinedCommunity
from shared.events.envelope import CloudEvent
from shared.events.topics import CAMPAIGNS, MEMBERS
from tests.campaigns.conftest import OPERATOR
from tests.conftest import Databases, auth, eventually, read_topic, running, settings_for


async def test_a_member_joining_by_event_can_check_in_and_the_check_in_is_published(
    databases: Databases, broker: LocalBroker
) -> None:
    settings = settings_for(CampaignsSettings, broker, await databases.new("campaigns"))
    community, member = str(uuid.uuid4()), str(uuid.uuid4())
    now = datetime.now(UTC)
    published = [
        CommunityCreated(
            community_id=community,
            name="Runners",
            owner_id=member,
            visibility="public",
            timezone="Europe/Paris",
            created_at=now,
        ),
        MemberJoinedCommunity(
            community_id=community, member_id=member, role="owner", joined_at=now
        ),
    ]
    async with running(create_app(settings)) as client:
        producer = new_producer(settings, client_id="test-members")
        await producer.start()
        try:
            for data, type_ in zip(
                published, ("community.created", "member.joined_community"), strict=True
            ):
                envelope = CloudEvent(
                    source="/services/members",
                    type=type_,
                    subject=community,
                    data=data.model_dump(mode="json"),
                )
                await producer.send_and_wait(
                    MEMBERS.name, envelope.to_json(), key=community.encode()
                )
        finally:
            await producer.stop()

        body = {
            "name": "21 days of running",
            "type": "checkin",
            "objective": "engagement",
            "community_id": community,
            "starts_at": (now - timedelta(minutes=1)).isoformat(),
            "ends_at": (now + timedelta(days=21)).isoformat(),
            "rules": {"days_required": 21},
        }

        async def community_known() -> bool:
            created = await client.post("/v1/campaigns", json=body, headers=OPERATOR)
            return created.json()["timezone"] == "Europe/Paris"

        await eventually(community_known, timeout_s=30, interval_s=0.2)
        created = (await client.post("/v1/campaigns", json=body, headers=OPERATOR)).json()
        await client.post(f"/v1/campaigns/{created['id']}/launch", headers=OPERATOR)

        async def checked_in() -> bool:
            response = await client.post(
                f"/v1/campaigns/{created['id']}/checkins", headers=auth(Role.MEMBER, member)
            )
            return response.status_code == 201

        await eventually(checked_in, timeout_s=30, interval_s=0.2)
        records = await read_topic(broker, CAMPAIGNS.name, 50, timeout_s=2)
    events = [CloudEvent.from_json(r.value or b"") for r in records]
    [checkin] = [e for e in events if e.type == "campaign.checked_in"]
    assert checkin.data["member_id"] == member
    assert checkin.data["campaign_id"] == created["id"]
