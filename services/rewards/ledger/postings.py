"""The points ledger: a double-entry, append-only journal with lots and a stored balance.

Every posting writes one ``ledger_entries`` row whose legs (``ledger_lines``) sum
to zero: the member's ``available``/``pending`` bucket against a system account
(``earned``, ``spent``, ``expired``, ``adjustments``). The stored balance on
``accounts`` changes in the same transaction, so the audit can prove that stored
balances equal the sum of the lines.

Concurrency: every posting starts with a write to the member's account row.
On PostgreSQL that locks the row; on SQLite it takes the database write lock
(SQLite does not lock what it reads, and ``pysqlite`` only opens the
transaction at the first write). Everything read after that write (lots,
earlier entries) is therefore current, and postings for one member serialise.
Spending is a conditional ``UPDATE ... WHERE available >= :n`` whose row count
decides, never a read-then-write.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards import events
from services.rewards.errors import DuplicateSource, InsufficientPoints
from services.rewards.ledger import sql
from services.rewards.models import Account
from services.rewards.settings import RewardsSettings
from shared.db import utcnow
from shared.events.contracts.rewards import (
    PointsAdjusted,
    PointsEarned,
    PointsSpent,
)
from shared.events.registry import EventData

AVAILABLE, PENDING = "available", "pending"
EARNED, SPENT, EXPIRED, ADJUSTMENTS = "earned", "spent", "expired", "adjustments"


def dialect_of(session: AsyncSession) -> str:
    return session.bind.dialect.name if session.bind else "sqlite"


@dataclass(frozen=True)
class Balance:
    available: int
    pending: int
    lifetime: int
    tier_code: str | None


@dataclass(frozen=True)
class Posting:
    entry_id: str
    amount: int
    balance: Balance


class Ledger:
    def __init__(self, settings: RewardsSettings) -> None:
        self.settings = settings

    # -- accounts ---------------------------------------------------------------------

    async def lock_account(self, session: AsyncSession, member_id: str) -> Balance:
        """Create the account if needed and hold it for this transaction (see module doc)."""
        stmt = sql.lock_account(dialect_of(session))
        row = (await session.execute(stmt, {"b_member": member_id, "b_now": utcnow()})).one()
        return Balance(row[0], row[1], row[2], row[3])

    async def get_account(self, session: AsyncSession, member_id: str) -> Account | None:
        return await session.get(Account, member_id)

    # -- postings ---------------------------------------------------------------------

    async def earn(
        self,
        session: AsyncSession,
        *,
        member_id: str,
        amount: int,
        reason_code: str,
        reason: str,
        source: str,
        rule_id: str | None = None,
        occurred_at: datetime | None = None,
        hold: timedelta | None = None,
        locked: bool = False,
    ) -> Posting | None:
        """Credit a new lot; ``None`` when ``source`` was already paid.

        ``locked``: the caller already holds the account (it read something to decide
        the amount). Otherwise the entry insert comes first (it dedupes, and on SQLite
        takes the write lock) and one upsert creates or credits the account.
        """
        if amount <= 0:
            raise ValueError("earned amounts are positive")
        now = utcnow()
        hold = hold if hold is not None else timedelta(hours=self.settings.default_hold_h)
        available_at = now + hold
        bucket = PENDING if hold > timedelta(0) else AVAILABLE
        days = self.settings.points_expiry_days
        expires_at = now + timedelta(days=days) if days else None
        entry_id, lot_id = str(uuid.uuid4()), str(uuid.uuid4())
        posted = await self.write_entry(
            session,
            skip_duplicate=True,
            entry={
                "id": entry_id,
                "member_id": member_id,
                "kind": "earn",
                "reason_code": reason_code,
                "reason": reason,
                "amount": amount,
                "available_delta": amount if bucket == AVAILABLE else 0,
                "pending_delta": amount if bucket == PENDING else 0,
                "source": source,
                "rule_id": rule_id,
                "occurred_at": occurred_at or now,
                "created_at": now,
            },
            lines=[(member_id, bucket, lot_id, amount), (None, EARNED, None, -amount)],
        )
        if not posted:  # this source was paid before: nothing else to do
            return None
        credit = {
            "b_member": member_id,
            "b_available": amount if bucket == AVAILABLE else 0,
            "b_pending": amount if bucket == PENDING else 0,
            "b_lifetime": amount,
            "b_now": now,
        }
        stmt = sql.MOVE if locked else sql.credit_account(dialect_of(session))
        row = (await session.execute(stmt, credit)).one()
        balance = Balance(row[0], row[1], row[2], row[3])
        await session.execute(
            sql.INSERT_LOT,
            {
                "id": lot_id,
                "member_id": member_id,
                "entry_id": entry_id,
                "amount": amount,
                "remaining": amount,
                "status": bucket,
                "available_at": available_at,
                "expires_at": expires_at,
                "created_at": now,
            },
        )
        data = PointsEarned(
            member_id=member_id,
            entry_id=entry_id,
            amount=amount,
            reason_code=reason_code,
            reason=reason,
            rule_id=rule_id,
            source=source,
            available_at=available_at,
            expires_at=expires_at,
            balance=balance.available,
            earned_at=now,
        )
        await events.publish(session, data, subject=member_id)
        return Posting(entry_id, amount, balance)

    async def spend(
        self,
        session: AsyncSession,
        *,
        member_id: str,
        amount: int,
        reason_code: str,
        reason: str,
        source: str,
        outbox: list[tuple[EventData, str]] | None = None,
    ) -> Posting:
        """Debit ``amount`` from the oldest-expiring lots, or raise ``InsufficientPoints``.

        With ``outbox`` the ``points.spent`` event is appended there for the caller to
        publish together with its own events (one outbox statement instead of two).
        """
        posting = await self._debit(
            session,
            member_id=member_id,
            amount=amount,
            kind="spend",
            reason_code=reason_code,
            reason=reason,
            source=source,
            system=SPENT,
        )
        data = PointsSpent(
            member_id=member_id,
            entry_id=posting.entry_id,
            amount=amount,
            reason_code=reason_code,
            source=source,
            balance=posting.balance.available,
            spent_at=utcnow(),
        )
        if outbox is None:
            await events.publish(session, data, subject=member_id)
        else:
            outbox.append((data, member_id))
        return posting

    async def adjust(
        self,
        session: AsyncSession,
        *,
        member_id: str,
        amount: int,
        reason: str,
        operator_id: str,
        source: str,
    ) -> Posting:
        """An operator's signed correction; credits make a lot, debits consume lots."""
        if amount == 0:
            raise ValueError("an adjustment moves points")
        if amount < 0:
            posting = await self._debit(
                session,
                member_id=member_id,
                amount=-amount,
                kind="adjust",
                reason_code="manual_adjustment",
                reason=reason,
                source=source,
                system=ADJUSTMENTS,
                operator_id=operator_id,
            )
        else:
            posting = await self._credit_adjustment(
                session, member_id, amount, reason, operator_id, source
            )
        data = PointsAdjusted(
            member_id=member_id,
            entry_id=posting.entry_id,
            amount=amount,
            reason=reason,
            operator_id=operator_id,
            balance=posting.balance.available,
            adjusted_at=utcnow(),
        )
        await events.publish(session, data, subject=member_id)
        return posting

    async def _credit_adjustment(
        self,
        session: AsyncSession,
        member_id: str,
        amount: int,
        reason: str,
        operator_id: str,
        source: str,
    ) -> Posting:
        await self.lock_account(session, member_id)
        now = utcnow()
        days = self.settings.points_expiry_days
        entry_id, lot_id = str(uuid.uuid4()), str(uuid.uuid4())
        await self.write_entry(
            session,
            entry={
                "id": entry_id,
                "member_id": member_id,
                "kind": "adjust",
                "reason_code": "manual_adjustment",
                "reason": reason,
                "amount": amount,
                "available_delta": amount,
                "pending_delta": 0,
                "source": source,
                "operator_id": operator_id,
                "occurred_at": now,
                "created_at": now,
            },
            lines=[(member_id, AVAILABLE, lot_id, amount), (None, ADJUSTMENTS, None, -amount)],
        )
        # Adjustments do not count towards lifetime points (and so not towards tiers).
        balance = await self.move(session, member_id, available=amount)
        await session.execute(
            sql.INSERT_LOT,
            {
                "id": lot_id,
                "member_id": member_id,
                "entry_id": entry_id,
                "amount": amount,
                "remaining": amount,
                "status": AVAILABLE,
                "available_at": now,
                "expires_at": now + timedelta(days=days) if days else None,
                "created_at": now,
            },
        )
        return Posting(entry_id, amount, balance)

    async def _debit(
        self,
        session: AsyncSession,
        *,
        member_id: str,
        amount: int,
        kind: str,
        reason_code: str,
        reason: str,
        source: str,
        system: str,
        operator_id: str | None = None,
    ) -> Posting:
        if amount <= 0:
            raise ValueError("debited amounts are positive")
        now = utcnow()
        debited = await session.execute(
            sql.DEBIT, {"b_member": member_id, "b_amount": amount, "b_now": now}
        )
        row = debited.first()
        if row is None:
            available = await session.scalar(sql.AVAILABLE_BALANCE, {"b_member": member_id})
            raise InsufficientPoints(available=available or 0, required=amount)
        balance = Balance(row[0], row[1], row[2], row[3])
        entry_id = str(uuid.uuid4())
        lines: list[tuple[str | None, str, str | None, int]] = []
        for lot_id, take in await self._consume_lots(session, member_id, amount):
            lines.append((member_id, AVAILABLE, lot_id, -take))
        lines.append((None, system, None, amount))
        await self.write_entry(
            session,
            entry={
                "id": entry_id,
                "member_id": member_id,
                "kind": kind,
                "reason_code": reason_code,
                "reason": reason,
                "amount": -amount,
                "available_delta": -amount,
                "pending_delta": 0,
                "source": source,
                "operator_id": operator_id,
                "occurred_at": now,
                "created_at": now,
            },
            lines=lines,
        )
        return Posting(entry_id, -amount, balance)

    async def _consume_lots(
        self, session: AsyncSession, member_id: str, amount: int
    ) -> list[tuple[str, int]]:
        """Take ``amount`` from the member's spendable lots, oldest expiry first."""
        lots = (
            await session.execute(sql.SPENDABLE_LOTS, {"b_member": member_id, "b_limit": amount})
        ).all()
        taken: list[tuple[str, int]] = []
        left = amount
        for lot_id, remaining in lots:
            take = min(remaining, left)
            await session.execute(sql.TAKE_FROM_LOT, {"b_lot": lot_id, "b_take": take})
            taken.append((lot_id, take))
            left -= take
            if left == 0:
                return taken
        # The stored balance said yes but the lots disagree: refuse rather than diverge.
        raise RuntimeError(f"lots of {member_id} hold less than the available balance")

    async def move(
        self,
        session: AsyncSession,
        member_id: str,
        *,
        available: int = 0,
        pending: int = 0,
        lifetime: int = 0,
    ) -> Balance:
        params = {
            "b_member": member_id,
            "b_available": available,
            "b_pending": pending,
            "b_lifetime": lifetime,
            "b_now": utcnow(),
        }
        row = (await session.execute(sql.MOVE, params)).one()
        return Balance(row[0], row[1], row[2], row[3])

    async def write_entry(
        self,
        session: AsyncSession,
        *,
        entry: dict[str, Any],
        lines: list[tuple[str | None, str, str | None, int]],
        skip_duplicate: bool = False,
    ) -> bool:
        """Append an entry and its legs; a second entry for one ``source`` never lands.

        With ``skip_duplicate`` a taken source returns False (the caller writes nothing
        else); otherwise it raises ``DuplicateSource`` and the transaction rolls back.
        """
        assert sum(line[3] for line in lines) == 0, "a posting must balance"
        inserted = await session.execute(sql.insert_entry(dialect_of(session)), entry)
        if inserted.first() is None:
            if skip_duplicate:
                return False
            raise DuplicateSource(f"An entry for {entry['source']!r} already exists")
        await session.execute(
            sql.INSERT_LINES,
            [
                {
                    "entry_id": entry["id"],
                    "member_id": member,
                    "account": account,
                    "lot_id": lot,
                    "amount": amount,
                }
                for member, account, lot, amount in lines
            ],
        )
        return True
