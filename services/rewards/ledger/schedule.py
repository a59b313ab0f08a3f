"""Scheduled ledger work: releasing held points, expiring lots, expiry reminders.

Exactly once across replicas without a leader: each member's account is locked
first (as every posting does), and each lot moves out of its due state with a
conditional UPDATE whose row count decides; the entry's ``source`` names the lot,
so even a bypassed check could not post twice.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards import events
from services.rewards.ledger.postings import AVAILABLE, EXPIRED, PENDING, Ledger
from services.rewards.models import Lot
from shared.db import utcnow
from shared.events.contracts.rewards import PointsExpired, PointsExpiring


class LedgerSchedule:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.settings = ledger.settings

    # -- scheduled work ---------------------------------------------------------------

    async def release_due(self, session: AsyncSession, limit: int) -> int:
        """Move pending lots whose hold has passed to available; once per lot."""
        now = utcnow()
        members = await self._members_with(
            session, Lot.status == PENDING, Lot.available_at <= now, limit=limit
        )
        handled = 0
        for member_id in members:
            await self.ledger.lock_account(session, member_id)
            due = (
                await session.execute(
                    select(Lot.id, Lot.remaining, Lot.entry_id).where(
                        Lot.member_id == member_id, Lot.status == PENDING, Lot.available_at <= now
                    )
                )
            ).all()
            for lot_id, remaining, _ in due:
                moved = await session.execute(
                    update(Lot)
                    .where(Lot.id == lot_id, Lot.status == PENDING)
                    .values(status=AVAILABLE)
                )
                if moved.rowcount != 1:  # type: ignore[attr-defined]
                    continue
                await self.ledger.move(session, member_id, available=remaining, pending=-remaining)
                await self.ledger.write_entry(
                    session,
                    entry={
                        "id": str(uuid.uuid4()),
                        "member_id": member_id,
                        "kind": "release",
                        "reason_code": "hold_released",
                        "reason": "Pending points became available",
                        "amount": remaining,
                        "available_delta": remaining,
                        "pending_delta": -remaining,
                        "source": f"release:{lot_id}",
                        "occurred_at": now,
                        "created_at": now,
                    },
                    lines=[
                        (member_id, PENDING, lot_id, -remaining),
                        (member_id, AVAILABLE, lot_id, remaining),
                    ],
                )
                handled += 1
        return handled

    async def expire_due(self, session: AsyncSession, limit: int) -> int:
        """Expire available lots past their date, one ``points.expired`` per member."""
        now = utcnow()
        members = await self._members_with(
            session,
            Lot.status == AVAILABLE,
            Lot.expires_at.is_not(None),
            Lot.expires_at <= now,
            limit=limit,
        )
        handled = 0
        for member_id in members:
            await self.ledger.lock_account(session, member_id)
            due = (
                await session.execute(
                    select(Lot.id, Lot.remaining).where(
                        Lot.member_id == member_id,
                        Lot.status == AVAILABLE,
                        Lot.expires_at <= now,
                    )
                )
            ).all()
            total = 0
            for lot_id, remaining in due:
                expired = await session.execute(
                    update(Lot)
                    .where(Lot.id == lot_id, Lot.status == AVAILABLE)
                    .values(status=EXPIRED, remaining=0)
                )
                if expired.rowcount != 1:  # type: ignore[attr-defined]
                    continue
                handled += 1
                if remaining == 0:
                    continue
                total += remaining
                await self.ledger.write_entry(
                    session,
                    entry={
                        "id": str(uuid.uuid4()),
                        "member_id": member_id,
                        "kind": "expire",
                        "reason_code": "points_expired",
                        "reason": "Points reached their expiry date",
                        "amount": -remaining,
                        "available_delta": -remaining,
                        "pending_delta": 0,
                        "source": f"expire:{lot_id}",
                        "occurred_at": now,
                        "created_at": now,
                    },
                    lines=[
                        (member_id, AVAILABLE, lot_id, -remaining),
                        (None, EXPIRED, None, remaining),
                    ],
                )
            if total:
                balance = await self.ledger.move(session, member_id, available=-total)
                data = PointsExpired(
                    member_id=member_id, amount=total, balance=balance.available, expired_at=now
                )
                await events.publish(session, data, subject=member_id)
        return handled

    async def remind_expiring(self, session: AsyncSession, limit: int) -> int:
        """One ``points.expiring`` per member and lot batch, ``expiry_reminder_days`` ahead."""
        now = utcnow()
        horizon = now + timedelta(days=self.settings.expiry_reminder_days)
        due = (
            await session.execute(
                select(Lot.id, Lot.member_id, Lot.remaining, Lot.expires_at)
                .where(
                    Lot.status == AVAILABLE,
                    Lot.reminded_at.is_(None),
                    Lot.expires_at.is_not(None),
                    Lot.expires_at <= horizon,
                    Lot.expires_at > now,
                    Lot.remaining > 0,
                )
                .order_by(Lot.expires_at)
                .limit(limit)
            )
        ).all()
        per_member: dict[str, tuple[int, datetime]] = {}
        for lot_id, member_id, remaining, expires_at in due:
            marked = await session.execute(
                update(Lot)
                .where(Lot.id == lot_id, Lot.reminded_at.is_(None))
                .values(reminded_at=now)
            )
            if marked.rowcount != 1:  # type: ignore[attr-defined]
                continue
            assert expires_at is not None
            amount, first = per_member.get(member_id, (0, expires_at))
            per_member[member_id] = (amount + remaining, min(first, expires_at))
        for member_id, (amount, expires_at) in per_member.items():
            data = PointsExpiring(member_id=member_id, amount=amount, expires_at=expires_at)
            await events.publish(session, data, subject=member_id)
        return len(due)

    async def _members_with(self, session: AsyncSession, *where: Any, limit: int) -> list[str]:
        rows = await session.execute(
            select(Lot.member_id).where(*where).group_by(Lot.member_id).limit(limit)
        )
        return [member_id for (member_id,) in rows]
