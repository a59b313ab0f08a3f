"""Partner webhook endpoints, the delivery log and replay; recording what each event owes whom."""

from __future__ import annotations

import base64
import binascii
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from services.webhooks import events
from services.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from services.webhooks.repository import (
    PENDING,
    DeliveryRepository,
    EndpointRepository,
    note_new_deliveries,
)
from services.webhooks.schemas import EndpointCreate, EndpointUpdate, pattern_matches
from services.webhooks.settings import WebhooksSettings
from services.webhooks.signing import new_secret, secret_sealer
from services.webhooks.ssrf import TargetBlocked, TargetPolicy, check_url_target
from shared.auth import Principal, Role
from shared.crypto import Sealer
from shared.db import utcnow
from shared.errors import Conflict, Forbidden, NotFound, Unprocessable
from shared.events.envelope import CloudEvent

log = logging.getLogger(__name__)

TEST_EVENT_TYPE = "webhook.test"
SOURCE = "/services/webhooks"


class EndpointNotFound(NotFound):
    title = "Webhook endpoint not found"


class DeliveryNotFound(NotFound):
    title = "Webhook delivery not found"


class InvalidEndpointUrl(Unprocessable):
    code, title = "invalid-endpoint-url", "Endpoint URL not allowed"

    def __init__(self, detail: str) -> None:
        super().__init__(
            detail, errors=[{"field": "body.url", "message": detail, "type": self.code}]
        )


class InvalidCursor(Unprocessable):
    code, title = "invalid-cursor", "Invalid cursor"


class EventScopeMissing(Forbidden):
    code, title = "event-scope-missing", "Event type outside the key's scopes"


class NotReplayable(Conflict):
    code, title = "not-replayable", "Delivery cannot be replayed"


def sealer_for(settings: WebhooksSettings) -> Sealer:
    return secret_sealer(settings.endpoint_secret_key.get_secret_value())


def policy_for(settings: WebhooksSettings) -> TargetPolicy:
    return TargetPolicy(
        allow_private=settings.allow_private_targets, allowlist=settings.private_target_allowlist
    )


def event_scope_covers(scopes: frozenset[str], pattern: str) -> bool:
    """Whether a partner's ``events:`` scopes include every type ``pattern`` can match."""
    if {"*", "events:*"} & scopes:
        return True
    for scope in scopes:
        if not scope.startswith("events:"):
            continue
        granted = scope.removeprefix("events:")
        if granted == pattern:
            return True
        if granted.endswith(".*") and pattern != "*" and pattern.startswith(granted[:-1]):
            return True
    return False


def _encode(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCursor("The cursor is not one this API returned") from None


class WebhookService:
    # -- endpoints -------------------------------------------------------------------------

    async def create_endpoint(
        self,
        session: AsyncSession,
        principal: Principal,
        data: EndpointCreate,
        settings: WebhooksSettings,
    ) -> tuple[WebhookEndpoint, str]:
        """The new endpoint and its signing secret (shown once; stored sealed)."""
        self._check_event_scopes(principal, data.event_types)
        await self.check_url(data.url, settings)
        now = utcnow()
        secret = new_secret()
        endpoint = WebhookEndpoint(
            id=str(uuid.uuid4()),
            owner=principal.subject,
            owner_role=principal.role.value,
            url=data.url,
            description=data.description,
            event_types=data.event_types,
            community_id=data.community_id,
            enabled=data.enabled,
            secret_ciphertext=sealer_for(settings).seal(secret),
            created_at=now,
            updated_at=now,
        )
        await EndpointRepository(session).add(endpoint)
        return endpoint, secret

    async def list_endpoints(
        self, session: AsyncSession, principal: Principal, cursor: str | None, limit: int
    ) -> tuple[list[WebhookEndpoint], str | None]:
        after: tuple[datetime, str] | None = None
        if cursor:
            created, _, last_id = _decode(cursor).partition("|")
            try:
                after = (datetime.fromisoformat(created), last_id)
            except ValueError:
                raise InvalidCursor("The cursor is not one this API returned") from None
        owner = None if principal.is_operator else principal.subject
        items = await EndpointRepository(session).page(owner, after, limit + 1)
        next_cursor = None
        if len(items) > limit:
            items = items[:limit]
            last = items[-1]
            next_cursor = _encode(f"{last.created_at.isoformat()}|{last.id}")
        return items, next_cursor

    async def get_endpoint(
        self, session: AsyncSession, principal: Principal, endpoint_id: str
    ) -> WebhookEndpoint:
        endpoint = await EndpointRepository(session).get(endpoint_id)
        # Another partner's endpoint is "not found": its existence is not theirs to learn.
        if endpoint is None or not (principal.is_operator or endpoint.owner == principal.subject):
            raise EndpointNotFound(f"No webhook endpoint with id {endpoint_id}")
        return endpoint

    async def update_endpoint(
        self,
        session: AsyncSession,
        principal: Principal,
        endpoint_id: str,
        data: EndpointUpdate,
        settings: WebhooksSettings,
    ) -> WebhookEndpoint:
        endpoint = await self.get_endpoint(session, principal, endpoint_id)
        changes = data.model_dump(exclude_unset=True)
        if changes.get("event_types") is not None:
            self._check_event_scopes(principal, changes["event_types"])
        if changes.get("url") is not None:
            await self.check_url(changes["url"], settings)
        for name in ("url", "event_types", "description"):
            if changes.get(name) is not None:
                setattr(endpoint, name, changes[name])
        if "community_id" in changes:
            endpoint.community_id = changes["community_id"]
        if changes.get("enabled") is True and not endpoint.enabled:
            endpoint.enabled = True
            endpoint.disabled_reason = endpoint.disabled_at = endpoint.failing_since = None
        elif changes.get("enabled") is False and endpoint.enabled:
            endpoint.enabled = False
            endpoint.disabled_reason = f"disabled by {principal.subject}"
            endpoint.disabled_at = utcnow()
        endpoint.updated_at = utcnow()
        await session.flush()
        return endpoint

    async def delete_endpoint(
        self, session: AsyncSession, principal: Principal, endpoint_id: str
    ) -> None:
        endpoint = await self.get_endpoint(session, principal, endpoint_id)
        await EndpointRepository(session).delete(endpoint.id)

    async def rotate_secret(
        self,
        session: AsyncSession,
        principal: Principal,
        endpoint_id: str,
        overlap: timedelta,
        settings: WebhooksSettings,
    ) -> tuple[WebhookEndpoint, str]:
        """A new secret (returned once); the old one keeps signing for ``overlap``."""
        endpoint = await self.get_endpoint(session, principal, endpoint_id)
        now = utcnow()
        keep_old = overlap > timedelta(0)
        endpoint.previous_secret_ciphertext = endpoint.secret_ciphertext if keep_old else None
        endpoint.previous_secret_expires_at = now + overlap if keep_old else None
        secret = new_secret()
        endpoint.secret_ciphertext = sealer_for(settings).seal(secret)
        endpoint.updated_at = now
        await session.flush()
        return endpoint, secret

    async def send_test(
        self, session: AsyncSession, principal: Principal, endpoint_id: str
    ) -> WebhookDelivery:
        endpoint = await self.get_endpoint(session, principal, endpoint_id)
        event = CloudEvent(
            source=SOURCE,
            type=TEST_EVENT_TYPE,
            subject=endpoint.id,
            data={"endpoint_id": endpoint.id, "message": "A test event from the platform."},
        )
        now = utcnow()
        delivery = WebhookDelivery(**_delivery_row(endpoint.id, event, now))
        session.add(delivery)
        await session.flush()
        note_new_deliveries(session)
        return delivery

    async def replay_range(
        self,
        session: AsyncSession,
        principal: Principal,
        endpoint_id: str,
        since: datetime,
        until: datetime | None,
    ) -> int:
        endpoint = await self.get_endpoint(session, principal, endpoint_id)
        now = utcnow()
        return await DeliveryRepository(session).replay(
            now, endpoint_id=endpoint.id, since=since, until=until or now
        )

    # -- delivery log ----------------------------------------------------------------------

    async def list_deliveries(
        self,
        session: AsyncSession,
        principal: Principal,
        *,
        endpoint_id: str | None,
        status: str | None,
        cursor: str | None,
        limit: int,
    ) -> tuple[list[WebhookDelivery], str | None]:
        before: int | None = None
        if cursor:
            try:
                before = int(_decode(cursor))
            except ValueError:
                raise InvalidCursor("The cursor is not one this API returned") from None
        endpoint_ids: list[str] | None = None
        if endpoint_id is not None:
            endpoint_ids = [(await self.get_endpoint(session, principal, endpoint_id)).id]
        elif not principal.is_operator:
            own, _ = await self.list_endpoints(session, principal, None, 10_000)
            endpoint_ids = [e.id for e in own]
        items = await DeliveryRepository(session).page(endpoint_ids, status, before, limit + 1)
        next_cursor = None
        if len(items) > limit:
            items = items[:limit]
            next_cursor = _encode(str(items[-1].seq))
        return items, next_cursor

    async def get_delivery(
        self, session: AsyncSession, principal: Principal, delivery_id: str
    ) -> tuple[WebhookDelivery, list[WebhookAttempt]]:
        repo = DeliveryRepository(session)
        delivery = await repo.get(delivery_id)
        if delivery is None:
            raise DeliveryNotFound(f"No webhook delivery with id {delivery_id}")
        try:
            await self.get_endpoint(session, principal, delivery.endpoint_id)
        except EndpointNotFound:
            raise DeliveryNotFound(f"No webhook delivery with id {delivery_id}") from None
        return delivery, await repo.attempts_of(delivery.id)

    async def replay_delivery(
        self, session: AsyncSession, principal: Principal, delivery_id: str
    ) -> WebhookDelivery:
        delivery, _ = await self.get_delivery(session, principal, delivery_id)
        if delivery.payload is None:
            raise NotReplayable("The body was purged (member erasure); it cannot be sent again")
        if delivery.status == PENDING:
            raise NotReplayable("The delivery is still pending; it will be tried again anyway")
        await DeliveryRepository(session).replay(utcnow(), delivery_id=delivery.id)
        await session.refresh(delivery)
        return delivery

    async def disable(
        self, session: AsyncSession, endpoint: WebhookEndpoint, reason: str, now: datetime
    ) -> None:
        """Stop deliveries to the endpoint and tell operators (``webhook.endpoint_disabled``)."""
        endpoint.enabled = False
        endpoint.disabled_reason = reason
        endpoint.disabled_at = now
        endpoint.updated_at = now
        session.info.pop(ENABLED_CACHE, None)
        await session.flush()
        await events.endpoint_disabled(session, endpoint)
        log.warning("webhook endpoint %s disabled: %s", endpoint.id, reason)

    async def disable_endpoints_of(self, session: AsyncSession, owner: str, reason: str) -> int:
        """Disable every enabled endpoint ``owner`` registered; a second call finds none."""
        owned = await EndpointRepository(session).enabled_of(owner)
        now = utcnow()
        for endpoint in owned:
            await self.disable(session, endpoint, reason, now)
        return len(owned)

    # -- consuming ------------------------------------------------------------------------

    async def record_event(self, session: AsyncSession, event: CloudEvent) -> int:
        """One pending delivery per matching endpoint; the dispatcher sends them later."""
        return await self.record_events(session, [event])

    async def record_events(self, session: AsyncSession, events: Sequence[CloudEvent]) -> int:
        """The deliveries a run of events owes, in one INSERT (a consumer batch is one run).

        No HTTP here: this runs in the consumer's transaction. The commit wakes the
        dispatcher (``NEW_DELIVERIES``), so nothing waits for its next poll.
        """
        deliveries = DeliveryRepository(session)
        endpoints = EndpointRepository(session)
        now = utcnow()
        rows: list[dict[str, Any]] = []
        recorded = 0
        for event in events:
            if event.type == "member.erased":
                # Deliveries recorded earlier in the run are purged too: written first.
                await deliveries.add_many(rows)
                recorded, rows = recorded + len(rows), []
                await deliveries.purge_mentioning(str(event.data["member_id"]))
            rows += await _rows_for(session, endpoints, event, now)
        await deliveries.add_many(rows)
        return recorded + len(rows)

    # -- checks ---------------------------------------------------------------------------

    def _check_event_scopes(self, principal: Principal, patterns: list[str]) -> None:
        if principal.role is not Role.PARTNER:
            return
        outside = [p for p in patterns if not event_scope_covers(principal.scopes, p)]
        if outside:
            raise EventScopeMissing(
                f"The API key's scopes do not cover {', '.join(outside)}; "
                "ask an operator for events:<type> scopes"
            )

    async def check_url(self, raw: str, settings: WebhooksSettings) -> None:
        try:
            url = httpx.URL(raw)
        except httpx.InvalidURL as exc:
            raise InvalidEndpointUrl(f"Not a valid URL: {exc}") from None
        allowed = ("https",) if not settings.is_local else ("https", "http")
        if url.scheme not in allowed:
            raise InvalidEndpointUrl(f"The URL must use {' or '.join(allowed)}")
        if not url.host:
            raise InvalidEndpointUrl("The URL has no host")
        if url.userinfo:
            raise InvalidEndpointUrl("Credentials in the URL are not allowed")
        try:
            await check_url_target(url, policy_for(settings), timeout_s=settings.resolve_timeout_s)
        except TargetBlocked as exc:
            raise InvalidEndpointUrl(str(exc)) from None


ENABLED_CACHE = "webhooks.enabled_endpoints"


async def _partner_may_hear(
    endpoints: EndpointRepository, endpoint: WebhookEndpoint, event: CloudEvent
) -> bool:
    """A partner hears about its own endpoints and API keys only, never another partner's."""
    if event.type.startswith("webhook."):
        return await endpoints.owner_of(str(event.data.get("endpoint_id"))) == endpoint.owner
    if event.type.startswith("api_key."):
        return event.data.get("principal_subject") == endpoint.owner
    return True


async def _enabled_endpoints(session: AsyncSession) -> list[WebhookEndpoint]:
    """The enabled endpoints, read once per transaction: a consumer batch applies many
    events in one transaction, and reading them per event was a query per delivery.
    Whoever enables or disables endpoints in the transaction drops the cache."""
    cached: list[WebhookEndpoint] | None = session.info.get(ENABLED_CACHE)
    if cached is None:
        cached = session.info[ENABLED_CACHE] = await EndpointRepository(session).enabled()
    return cached


async def _rows_for(
    session: AsyncSession, endpoints: EndpointRepository, event: CloudEvent, now: datetime
) -> list[dict[str, Any]]:
    community = event.data.get("community_id")
    rows: list[dict[str, Any]] = []
    payload: str | None = None
    for endpoint in await _enabled_endpoints(session):
        if not any(pattern_matches(p, event.type) for p in endpoint.event_types):
            continue
        # A community filter keeps that community's events only; platform-wide
        # events (no community_id) are for unfiltered endpoints.
        if endpoint.community_id and community != endpoint.community_id:
            continue
        if endpoint.owner_role == Role.PARTNER.value and not await _partner_may_hear(
            endpoints, endpoint, event
        ):
            continue
        payload = payload or event.to_json().decode()  # once per event, not per endpoint
        rows.append(_delivery_row(endpoint.id, event, now, payload))
    return rows


def _delivery_row(
    endpoint_id: str, event: CloudEvent, now: datetime, payload: str | None = None
) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "endpoint_id": endpoint_id,
        "event_id": event.id,
        "event_type": event.type,
        "payload": payload if payload is not None else event.to_json().decode(),
        "status": PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


webhook_service = WebhookService()
