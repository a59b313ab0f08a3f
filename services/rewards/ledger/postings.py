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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards import events
from services.rewards.errors import DuplicateSource, InsufficientPoints
from services.rewards.ledger import sql
from services.rewards.models import Account
from services.rewards.settings import RewardsSettings
from shared.db import dialect_of, utcnow
from shared.events.contracts.rewards import (
    PointsAdjusted,
    PointsEarned,
    PointsSpent,
)
from shared.events.registry import EventData

AVAILABLE, PENDING = "available", "pending"
EARNED, SPENT, EXPIRED, ADJUSTMENTS = "earned", "spent", "expired", "adjustments"


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


@dataclass(frozen=True)
class Credit:
    """Points to pay one member for one source (an event id, a request key)."""

    member_id: str
    amount: int
    reason_code: str
    reason: str
    source: str
    rule_id: str | None = None
    occurred_at: datetime | None = None
    hold: timedelta | None = None


@dataclass(frozen=True)
class _EarnPlan:
    """The rows one credit writes, built before anything touches the database."""

    credit: Credit
    entry: dict[str, Any]
    lines: list[dict[str, Any]]
    lot: dict[str, Any]
    available: int

    @property
    def pending(self) -> int:
        return self.credit.amount - self.available


Leg = tuple[str | None, str, str | None, int]


def line_rows(entry_id: str, legs: list[Leg]) -> list[dict[str, Any]]:
    assert sum(leg[3] for leg in legs) == 0, "a posting must balance"
    return [
        {
            "entry_id": entry_id,
            "member_id": member,
            "account": account,
            "lot_id": lot,
            "amount": amount,
        }
        for member, account, lot, amount in legs
    ]


class Ledger:
    def __init__(self, settings: RewardsSettings) -> None:
        self.settings = settings
        self.default_hold = timedelta(hours=settings.default_hold_h)

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
        credit = Credit(member_id, amount, reason_code, reason, source, rule_id, occurred_at, hold)
        [posting] = await self.earn_many(session, [credit], locked=locked)
        return posting

    async def earn_many(
        self, session: AsyncSession, credits: Sequence[Credit], *, locked: bool = False
    ) -> list[Posting | None]:
        """Credit many lots with one statement per table; ``None`` where a source was paid.

        Accounts are credited once per member with the run's total, in member order
        (so two runs never wait on each other's rows in opposite orders); each
        ``points.earned`` still carries the balance right after its own credit.
        """
        if any(credit.amount <= 0 for credit in credits):
            raise ValueError("earned amounts are positive")
        now = utcnow()
        plans = [self._plan(credit, now) for credit in credits]
        inserted = await self._insert_entries(session, [plan.entry for plan in plans])
        fresh = [plan for plan in plans if plan.entry["id"] in inserted]
        if not fresh:  # every source was paid before: nothing else to do
            return [None] * len(plans)
        await session.execute(sql.INSERT_LINES, [line for plan in fresh for line in plan.lines])
        balances = await self._credit_accounts(session, fresh, now, locked=locked)
        await session.execute(sql.INSERT_LOT, [plan.lot for plan in fresh])
        postings: dict[str, Posting] = {}
        published: list[tuple[EventData, str]] = []
        # Walk backwards from each member's final balance to the balance after each credit.
        for plan in reversed(fresh):
            member = plan.credit.member_id
            after = balances[member]
            postings[plan.entry["id"]] = Posting(plan.entry["id"], plan.credit.amount, after)
            balances[member] = Balance(
                after.available - plan.available,
                after.pending - plan.pending,
                after.lifetime - plan.credit.amount,
                after.tier_code,
            )
            published.append((self._earned_event(plan, after, now), member))
        await events.publish_many(session, published[::-1])
        return [postings.get(plan.entry["id"]) for plan in plans]

    def _plan(self, credit: Credit, now: datetime) -> _EarnPlan:
        hold = credit.hold if credit.hold is not None else self.default_hold
        bucket = PENDING if hold > timedelta(0) else AVAILABLE
        available = credit.amount if bucket == AVAILABLE else 0
        entry_id, lot_id = str(uuid.uuid4()), str(uuid.uuid4())
        days = self.settings.points_expiry_days
        entry = {
            "id": entry_id,
            "member_id": credit.member_id,
            "kind": "earn",
            "reason_code": credit.reason_code,
            "reason": credit.reason,
            "amount": credit.amount,
            "available_delta": available,
            "pending_delta": credit.amount - available,
            "source": credit.source,
            "rule_id": credit.rule_id,
            "occurred_at": credit.occurred_at or now,
            "created_at": now,
        }
        legs = [
            (credit.member_id, bucket, lot_id, credit.amount),
            (None, EARNED, None, -credit.amount),
        ]
        lot = {
            "id": lot_id,
            "member_id": credit.member_id,
            "entry_id": entry_id,
            "amount": credit.amount,
            "remaining": credit.amount,
            "status": bucket,
            "available_at": now + hold,
            "expires_at": now + timedelta(days=days) if days else None,
            "created_at": now,
        }
        return _EarnPlan(credit, entry, line_rows(entry_id, legs), lot, available)

    async def _insert_entries(
        self, session: AsyncSession, entries: list[dict[str, Any]]
    ) -> set[str]:
        """Insert entries whose source is new; returns the ids that landed."""
        stmt = sql.insert_entry(dialect_of(session))
        if len(entries) == 1:
            return set((await session.execute(stmt, entries[0])).scalars())
        return set((await session.execute(stmt, entries)).scalars())

    async def _credit_accounts(
        self, session: AsyncSession, plans: list[_EarnPlan], now: datetime, *, locked: bool
    ) -> dict[str, Balance]:
        totals: dict[str, list[int]] = {}
        for plan in plans:
            total = totals.setdefault(plan.credit.member_id, [0, 0, 0])
            total[0] += plan.available
            total[1] += plan.pending
            total[2] += plan.credit.amount
        members = sorted(totals)
        params = [
            {
                "b_member": member,
                "b_available": totals[member][0],
                "b_pending": totals[member][1],
                "b_lifetime": totals[member][2],
                "b_created": now,
                "b_now": now,
            }
            for member in members
        ]
        if locked or len(params) == 1:
            stmt = sql.MOVE if locked else sql.credit_account(dialect_of(session))
            rows = [(await session.execute(stmt, one)).one() for one in params]
            return {
                member: Balance(row[0], row[1], row[2], row[3])
                for member, row in zip(members, rows, strict=True)
            }
        stmt = sql.credit_accounts(dialect_of(session))
        result = await session.execute(stmt, params)
        return {row[0]: Balance(row[1], row[2], row[3], row[4]) for row in result}

    def _earned_event(self, plan: _EarnPlan, balance: Balance, now: datetime) -> PointsEarned:
        lot = plan.lot
        return PointsEarned(
            member_id=plan.credit.member_id,
            entry_id=plan.entry["id"],
            amount=plan.credit.amount,
            reason_code=plan.credit.reason_code,
            reason=plan.credit.reason,
            rule_id=plan.credit.rule_id,
            source=plan.credit.source,
            available_at=lot["available_at"],
            expires_at=lot["expires_at"],
            balance=balance.available,
            earned_at=now,
        )

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
        lines: list[Leg] = []
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
        self, session: AsyncSession, *, entry: dict[str, Any], lines: list[Leg]
    ) -> None:
        """Append an entry and its legs; a second entry for one ``source`` raises
        ``DuplicateSource`` and the transaction rolls back."""
        rows = line_rows(entry["id"], lines)
        if not await self._insert_entries(session, [entry]):
            raise DuplicateSource(f"An entry for {entry['source']!r} already exists")
        await session.execute(sql.INSERT_LINES, rows)
