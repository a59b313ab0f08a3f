"""Many spends in one transaction, set-based: the ledger side of group commit.

``SpendBook.open`` locks every account of the batch with one ``SELECT ... FOR
UPDATE`` in member-id order (the order every multi-member posting takes, so two
batches never wait on each other crosswise) and reads their spendable lots, oldest
expiring first, with one statement. ``debit`` then decides each spend in Python
against the running balance and lots, exactly as ``Ledger.spend`` would one at a
time; a refused spend changes nothing. ``write`` stores what was decided with one
statement per table.

On SQLite ``FOR UPDATE`` is not rendered: there the batch's first write (its
idempotency claims) already holds the database write lock, so what it reads is
current (see ``postings``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards.errors import InsufficientPoints
from services.rewards.ledger import sql
from services.rewards.ledger.postings import (
    AVAILABLE,
    SPENT,
    Balance,
    Leg,
    Posting,
    line_rows,
)
from shared.db import dialect_of


@dataclass
class _Account:
    available: int
    pending: int
    lifetime: int
    tier_code: str | None
    lots: list[list[Any]]  # [lot id, remaining], oldest expiring first
    spent: int = 0


@dataclass
class SpendBook:
    accounts: dict[str, _Account]
    now: datetime
    entries: list[dict[str, Any]] = field(default_factory=list)
    lines: list[dict[str, Any]] = field(default_factory=list)
    taken: dict[str, int] = field(default_factory=dict)  # lot id -> points taken

    @classmethod
    async def open(cls, session: AsyncSession, needs: dict[str, int], now: datetime) -> SpendBook:
        """Lock the accounts of ``needs`` (member -> most points the batch may take from
        them) and read just enough of their lots: each lot holds at least one point."""
        members = sorted(needs)
        accounts: dict[str, _Account] = {}
        if not members:
            return cls(accounts, now)
        dialect = dialect_of(session)
        for row in await session.execute(sql.lock_accounts(dialect), {"b_members": members}):
            accounts[row[0]] = _Account(row[1], row[2], row[3], row[4], [])
        funded = sorted(m for m, account in accounts.items() if account.available > 0)
        if funded:
            limit = max(min(needs[m], accounts[m].available) for m in funded)
            params = {"b_members": funded, "b_limit": limit}
            lots = await session.execute(sql.spendable_lots_of(dialect), params)
            for member, lot_id, remaining in lots:
                accounts[member].lots.append([lot_id, remaining])
        return cls(accounts, now)

    def available(self, member_id: str) -> int:
        account = self.accounts.get(member_id)
        return account.available if account is not None else 0

    def debit(
        self, member_id: str, amount: int, *, reason_code: str, reason: str, source: str
    ) -> Posting:
        """Spend ``amount`` from the running balance, oldest-expiring lots first, or raise
        ``InsufficientPoints`` (nothing changes then)."""
        if amount <= 0:
            raise ValueError("debited amounts are positive")
        account = self.accounts.get(member_id)
        if account is None or account.available < amount:
            raise InsufficientPoints(available=self.available(member_id), required=amount)
        takes: list[tuple[list[Any], int]] = []
        left = amount
        for lot in account.lots:
            if left == 0:
                break
            if lot[1] > 0:
                take = min(lot[1], left)
                takes.append((lot, take))
                left -= take
        if left:  # the stored balance said yes but the lots disagree: refuse rather than diverge
            raise RuntimeError(f"lots of {member_id} hold less than the available balance")
        legs: list[Leg] = []
        for lot, take in takes:
            lot[1] -= take
            self.taken[lot[0]] = self.taken.get(lot[0], 0) + take
            legs.append((member_id, AVAILABLE, lot[0], -take))
        legs.append((None, SPENT, None, amount))
        account.available -= amount
        account.spent += amount
        entry_id = str(uuid.uuid4())
        self.entries.append(
            {
                "id": entry_id,
                "member_id": member_id,
                "kind": "spend",
                "reason_code": reason_code,
                "reason": reason,
                "amount": -amount,
                "available_delta": -amount,
                "pending_delta": 0,
                "source": source,
                "rule_id": None,
                "operator_id": None,
                "occurred_at": self.now,
                "created_at": self.now,
            }
        )
        self.lines.extend(line_rows(entry_id, legs))
        balance = Balance(account.available, account.pending, account.lifetime, account.tier_code)
        return Posting(entry_id, -amount, balance)

    def spent(self) -> dict[str, int]:
        """Points the decided spends take from each member's balance."""
        return {member: a.spent for member, a in self.accounts.items() if a.spent}
