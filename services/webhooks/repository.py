"""Every query of the webhooks service."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from shared.db import conflict_insert
from shared.scheduler import claim

PENDING, SUCCEEDED, FAILED, DROPPED = "pending", "succeeded", "failed", "dropped"
# Set on a session that made deliveries due now; its commit wakes the dispatcher.
NEW_DELIVERIES = "webhooks.new_deliveries"


def note_new_deliveries(session: AsyncSession) -> None:
    session.info[NEW_DELIVERIES] = True


@dataclass(frozen=True)
class DueDelivery:
    id: str
    event_id: str
    payload: str | None
    attempts: int


class EndpointRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, endpoint: WebhookEndpoint) -> None:
        self.session.add(endpoint)
        await self.session.flush()

    async def get(self, endpoint_id: str) -> WebhookEndpoint | None:
        return await self.session.get(WebhookEndpoint, endpoint_id)

    async def page(
        self, owner: str | None, after: tuple[datetime, str] | None, limit: int
    ) -> list[WebhookEndpoint]:
        stmt = select(WebhookEndpoint)
        if owner is not None:
            stmt = stmt.where(WebhookEndpoint.owner == owner)
        if after is not None:
            created, last_id = after
            stmt = stmt.where(
                or_(
                    WebhookEndpoint.created_at < created,
                    (WebhookEndpoint.created_at == created) & (WebhookEndpoint.id < last_id),
                )
            )
        stmt = stmt.order_by(WebhookEndpoint.created_at.desc(), WebhookEndpoint.id.desc())
        return list(await self.session.scalars(stmt.limit(limit)))

    async def enabled(self) -> list[WebhookEndpoint]:
        return list(
            await self.session.scalars(
                select(WebhookEndpoint).where(WebhookEndpoint.enabled.is_(True))
            )
        )

    async def enabled_of(self, owner: str) -> list[WebhookEndpoint]:
        return list(
            await self.session.scalars(
                select(WebhookEndpoint).where(
                    WebhookEndpoint.owner == owner, WebhookEndpoint.enabled.is_(True)
                )
            )
        )

    async def owner_of(self, endpoint_id: str) -> str | None:
        return await self.session.scalar(
            select(WebhookEndpoint.owner).where(WebhookEndpoint.id == endpoint_id)
        )

    async def delete(self, endpoint_id: str) -> None:
        await self.session.execute(
            delete(WebhookAttempt).where(WebhookAttempt.endpoint_id == endpoint_id)
        )
        await self.session.execute(
            delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
        )
        await self.session.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id))

    async def claimable(self, now: datetime, exclude: Sequence[str], limit: int) -> list[str]:
        """Enabled, unleased endpoints with a delivery due; least recently served first."""
        due = exists().where(
            WebhookDelivery.endpoint_id == WebhookEndpoint.id,
            WebhookDelivery.status == PENDING,
            WebhookDelivery.next_attempt_at <= now,
        )
        stmt = select(WebhookEndpoint.id).where(
            WebhookEndpoint.enabled.is_(True),
            or_(WebhookEndpoint.lease_until.is_(None), WebhookEndpoint.lease_until < now),
            due,
        )
        if exclude:
            stmt = stmt.where(WebhookEndpoint.id.not_in(exclude))
        stmt = stmt.order_by(WebhookEndpoint.lease_until.asc().nulls_first()).limit(limit)
        return list(await self.session.scalars(claim(stmt)))

    async def take_lease(
        self, endpoint_id: str, owner: str, now: datetime, until: datetime
    ) -> bool:
        result = await self.session.execute(
            update(WebhookEndpoint)
            .where(
                WebhookEndpoint.id == endpoint_id,
                or_(WebhookEndpoint.lease_until.is_(None), WebhookEndpoint.lease_until < now),
            )
            .values(lease_owner=owner, lease_until=until)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def renew_lease(self, endpoint_id: str, owner: str, until: datetime) -> bool:
        result = await self.session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.lease_owner == owner)
            .values(lease_until=until)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def release_lease(self, endpoint_id: str, owner: str, now: datetime) -> None:
        # lease_until stays as "last served" so claiming rotates fairly between endpoints.
        await self.session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.lease_owner == owner)
            .values(lease_owner=None, lease_until=now)
        )


class DeliveryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add_many(self, rows: list[dict[str, Any]]) -> None:
        """Insert deliveries; one already recorded for (endpoint, event) is left as it is."""
        if not rows:
            return
        # Parameters, not a VALUES list: compiled once and cached, whatever the batch size.
        stmt = conflict_insert(
            self.session,
            WebhookDelivery.__table__,  # type: ignore[arg-type]
        ).on_conflict_do_nothing(index_elements=["endpoint_id", "event_id"])
        await self.session.execute(stmt, rows)
        note_new_deliveries(self.session)

    async def get(self, delivery_id: str) -> WebhookDelivery | None:
        return await self.session.scalar(
            select(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
        )

    async def page(
        self,
        endpoint_ids: Sequence[str] | None,
        status: str | None,
        before_seq: int | None,
        limit: int,
    ) -> list[WebhookDelivery]:
        stmt = select(WebhookDelivery)
        if endpoint_ids is not None:
            stmt = stmt.where(WebhookDelivery.endpoint_id.in_(endpoint_ids))
        if status is not None:
            stmt = stmt.where(WebhookDelivery.status == status)
        if before_seq is not None:
            stmt = stmt.where(WebhookDelivery.seq < before_seq)
        stmt = stmt.order_by(WebhookDelivery.seq.desc()).limit(limit)
        return list(await self.session.scalars(stmt))

    async def due_for(self, endpoint_id: str, now: datetime, limit: int) -> list[DueDelivery]:
        """What the dispatcher needs of each due delivery (no ORM objects: it is per delivery)."""
        rows = await self.session.execute(
            select(
                WebhookDelivery.id,
                WebhookDelivery.event_id,
                WebhookDelivery.payload,
                WebhookDelivery.attempts,
            )
            .where(
                WebhookDelivery.endpoint_id == endpoint_id,
                WebhookDelivery.status == PENDING,
                WebhookDelivery.next_attempt_at <= now,
            )
            .order_by(WebhookDelivery.seq)
            .limit(limit)
        )
        return [DueDelivery(*row) for row in rows]

    async def attempts_of(self, delivery_id: str) -> list[WebhookAttempt]:
        return list(
            await self.session.scalars(
                select(WebhookAttempt)
                .where(WebhookAttempt.delivery_id == delivery_id)
                .order_by(WebhookAttempt.attempted_at, WebhookAttempt.id)
            )
        )

    async def add_attempts(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            await self.session.execute(insert(WebhookAttempt), rows)

    async def settle_succeeded(
        self, ids: list[str], expected_attempts: int, status_code: int | None, now: datetime
    ) -> int:
        """Mark these deliveries delivered unless another sender settled them; how many."""
        result = await self.session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id.in_(ids),
                WebhookDelivery.status == PENDING,
                WebhookDelivery.attempts == expected_attempts,
            )
            .values(
                status=SUCCEEDED,
                attempts=expected_attempts + 1,
                delivered_at=now,
                last_attempt_at=now,
                last_status_code=status_code,
                last_error=None,
            )
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def settle(self, delivery_id: str, expected_attempts: int, **values: Any) -> bool:
        """Record an attempt's outcome unless another sender already did (exactly once)."""
        result = await self.session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery_id,
                WebhookDelivery.status == PENDING,
                WebhookDelivery.attempts == expected_attempts,
            )
            .values(**values)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def purge_mentioning(self, member_id: str) -> int:
        """Drop the stored bodies that mention the member; pending ones are not sent any more."""
        mentions = WebhookDelivery.payload.contains(member_id, autoescape=True)
        await self.session.execute(
            update(WebhookDelivery)
            .where(mentions, WebhookDelivery.status == PENDING)
            .values(status=DROPPED, last_error="payload purged: member erased")
        )
        result = await self.session.execute(
            update(WebhookDelivery).where(mentions).values(payload=None)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def replay(
        self,
        now: datetime,
        *,
        delivery_id: str | None = None,
        endpoint_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        """Due again now, with a fresh retry schedule; bodies purged for erasure stay unsent."""
        stmt = update(WebhookDelivery).where(WebhookDelivery.payload.is_not(None))
        if delivery_id is not None:
            stmt = stmt.where(WebhookDelivery.id == delivery_id, WebhookDelivery.status != PENDING)
        else:
            stmt = stmt.where(
                WebhookDelivery.endpoint_id == endpoint_id,
                WebhookDelivery.status == FAILED,
                WebhookDelivery.created_at >= since,
                WebhookDelivery.created_at < until,
            )
        result = await self.session.execute(
            stmt.values(status=PENDING, attempts=0, next_attempt_at=now)
        )
        replayed = int(result.rowcount)  # type: ignore[attr-defined]
        if replayed:
            note_new_deliveries(self.session)
        return replayed

    async def purge_older_than(self, cutoff: datetime, batch: int) -> int:
        """Attempts and settled deliveries older than ``cutoff``, at most ``batch`` each."""
        attempt_ids = list(
            await self.session.scalars(
                select(WebhookAttempt.id).where(WebhookAttempt.attempted_at < cutoff).limit(batch)
            )
        )
        if attempt_ids:
            await self.session.execute(
                delete(WebhookAttempt).where(WebhookAttempt.id.in_(attempt_ids))
            )
        seqs = list(
            await self.session.scalars(
                select(WebhookDelivery.seq)
                .where(WebhookDelivery.created_at < cutoff, WebhookDelivery.status != PENDING)
                .limit(batch)
            )
        )
        if seqs:
            await self.session.execute(delete(WebhookDelivery).where(WebhookDelivery.seq.in_(seqs)))
        return len(attempt_ids) + len(seqs)
