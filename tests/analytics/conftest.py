"""An analytics app without background tasks, fed contract events through its real handlers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Table, select

from services.analytics.app import create_app
from services.analytics.consumers import SUBSCRIPTIONS
from services.analytics.models import RawEvent
from services.analytics.repository import DERIVED
from services.analytics.settings import AnalyticsSettings
from shared.app import ServiceRuntime
from shared.auth import Role
from shared.consumer import ConsumedEvent, claim_in_inbox, claim_many_in_inbox
from shared.events.contracts import campaigns, content, members, rewards
from shared.events.envelope import CloudEvent
from shared.events.registry import EventData, spec_of
from tests.conftest import Databases, auth, running

OPERATOR = auth(Role.OPERATOR)
MONDAY = date(2026, 3, 2)  # a Monday, long past: retention weeks are all complete


def at(day: date, hour: int = 12, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Analytics:
    client: httpx.AsyncClient
    runtime: ServiceRuntime
    posts: dict[str, tuple[str, str]] = field(default_factory=dict)

    async def apply(self, data: EventData, event_id: str | None = None) -> bool:
        """What the consumer does per event: claim it in the inbox, then run the handler."""
        spec = spec_of(data)
        envelope = CloudEvent(
            id=event_id or new_id(),
            source="/services/test",
            type=spec.name,
            data=data.model_dump(mode="json"),
        )
        event = ConsumedEvent(envelope, data, spec.topic.name, 0, 0)
        async with self.runtime.db.session() as session:
            if not await claim_in_inbox(session, "analytics", envelope.id, spec.name):
                return False
            await SUBSCRIPTIONS[spec.name].run(session, [event])
        return True

    async def apply_batch(self, items: list[EventData]) -> None:
        """What the consumer does per partition batch: one transaction, one inbox insert."""
        events = []
        for data in items:
            spec = spec_of(data)
            envelope = CloudEvent(
                source="/services/test", type=spec.name, data=data.model_dump(mode="json")
            )
            events.append(ConsumedEvent(envelope, data, spec.topic.name, 0, 0))
        async with self.runtime.db.session() as session:
            claims = [(event.id, event.envelope.type) for event in events]
            fresh = await claim_many_in_inbox(session, "analytics", claims)
            # Every type shares one batched subscription: the whole run in one call.
            await SUBSCRIPTIONS[events[0].envelope.type].run(
                session, [event for event in events if event.id in fresh]
            )

    async def tables(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every table derived from events and the raw store, row by row, sorted (without
        wall-clock columns)."""
        dump: dict[str, list[tuple[Any, ...]]] = {}
        async with self.runtime.db.session() as session:
            for model in (*DERIVED, RawEvent):
                table = model.__table__
                assert isinstance(table, Table)
                columns = [c for c in table.c if c.name not in ("applied_at", "received_at")]
                rows = (await session.execute(select(*columns))).all()
                dump[table.name] = sorted((tuple(row) for row in rows), key=repr)
        return dump

    async def get(self, path: str, **params: Any) -> Any:
        response = await self.client.get(path, params=params, headers=OPERATOR)
        assert response.status_code == 200, response.text
        return response.json()

    # Builders for the events of a scenario; each returns the id it made.

    async def register(self, when: datetime, channel: str = "app", member: str = "") -> str:
        member = member or new_id()
        await self.apply(
            members.MemberRegistered(
                member_id=member, nickname="fan", channel=channel, registered_at=when
            )
        )
        return member

    async def community(self, timezone: str = "Asia/Shanghai") -> str:
        community = new_id()
        await self.apply(
            members.CommunityCreated(
                community_id=community,
                name="club",
                owner_id=new_id(),
                visibility="public",
                timezone=timezone,
                created_at=at(MONDAY - timedelta(days=60)),
            )
        )
        return community

    async def join(self, community: str, member: str, when: datetime) -> None:
        await self.apply(
            members.MemberJoinedCommunity(
                community_id=community, member_id=member, role="member", joined_at=when
            )
        )

    async def publish(
        self, author: str, community: str, when: datetime, kind: str = "member"
    ) -> str:
        post = new_id()
        self.posts[post] = (author, community)
        await self.apply(
            content.PostPublished(
                post_id=post,
                community_id=community,
                author_id=author,
                author_kind=kind,
                post_type="article",
                published_at=when,
            )
        )
        return post

    async def react(self, member: str, post: str, when: datetime) -> None:
        author, community = self.posts[post]
        await self.apply(
            content.ReactionAdded(
                post_id=post,
                community_id=community,
                member_id=member,
                kind="like",
                post_author_id=author,
                reacted_at=when,
            )
        )

    async def comment(self, member: str, post: str, when: datetime) -> None:
        author, community = self.posts[post]
        await self.apply(
            content.CommentCreated(
                post_id=post,
                community_id=community,
                comment_id=new_id(),
                author_id=member,
                post_author_id=author,
                created_at=when,
            )
        )

    async def share(self, member: str, post: str, when: datetime) -> str:
        author, community = self.posts[post]
        share = new_id()
        await self.apply(
            content.PostShared(
                post_id=post,
                community_id=community,
                share_id=share,
                member_id=member,
                channel="wechat",
                post_author_id=author,
                shared_at=when,
            )
        )
        return share

    async def view(
        self, member: str, post: str, when: datetime, via_share: str | None = None
    ) -> None:
        author, community = self.posts[post]
        await self.apply(
            content.PostViewed(
                post_id=post,
                community_id=community,
                member_id=member,
                post_author_id=author,
                via_share_id=via_share,
                viewed_at=when,
            )
        )

    async def check_in(self, campaign: str, member: str, when: datetime, community: str) -> None:
        await self.apply(
            campaigns.CampaignCheckedIn(
                campaign_id=campaign,
                community_id=community,
                member_id=member,
                day=when.date(),
                streak=1,
                total=1,
                checked_in_at=when,
            )
        )

    async def grant(self, campaign: str, member: str, when: datetime) -> None:
        await self.apply(
            campaigns.CampaignRewardGranted(
                grant_id=new_id(),
                campaign_id=campaign,
                member_id=member,
                kind="coupon",
                coupon_template_id=new_id(),
                reason="streak",
                granted_at=when,
            )
        )

    async def redeem(self, campaign: str, member: str, when: datetime) -> None:
        await self.apply(
            rewards.CouponRedeemed(
                coupon_id=new_id(),
                template_id=new_id(),
                member_id=member,
                campaign_id=campaign,
                redeemed_at=when,
            )
        )

    async def erase(self, member: str, when: datetime) -> None:
        await self.apply(members.MemberErased(member_id=member, erased_at=when))


@pytest.fixture
async def analytics(databases: Databases) -> AsyncIterator[Analytics]:
    settings = AnalyticsSettings.model_validate(
        {"database_url": await databases.new("analytics"), "log_json": False}
    )
    app = create_app(settings, run_background=False)
    async with running(app) as client:
        yield Analytics(client, app.state.runtime)
