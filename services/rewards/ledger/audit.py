"""Reading the ledger: statements and the audit that proves balances equal entries."""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards.ledger.postings import AVAILABLE, PENDING
from services.rewards.models import Account, LedgerEntry, LedgerLine, Lot
from services.rewards.pagination import encode_cursor, page
from shared.db import utcnow


def _sum_where(condition: Any, column: Any) -> Any:
    return func.sum(case((condition, column), else_=0))


class LedgerReader:
    # -- reading ----------------------------------------------------------------------

    async def entries(
        self, session: AsyncSession, member_id: str, cursor: str | None, limit: int
    ) -> tuple[list[LedgerEntry], str | None]:
        stmt = page(
            select(LedgerEntry).where(LedgerEntry.member_id == member_id),
            LedgerEntry.created_at,
            LedgerEntry.id,
            cursor,
            limit,
        )
        rows = list((await session.scalars(stmt)).all())
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id)
        return rows, next_cursor

    async def lines_of(self, session: AsyncSession, entry_ids: list[str]) -> list[LedgerLine]:
        if not entry_ids:
            return []
        stmt = select(LedgerLine).where(LedgerLine.entry_id.in_(entry_ids)).order_by(LedgerLine.id)
        return list((await session.scalars(stmt)).all())

    async def audit(self, session: AsyncSession) -> dict[str, Any]:
        """Stored balances against the sum of lines (and spendable lots), in one snapshot."""
        line_sums = (
            select(
                LedgerLine.member_id.label("member_id"),
                func.sum(case((LedgerLine.account == AVAILABLE, LedgerLine.amount), else_=0)).label(
                    "available"
                ),
                func.sum(case((LedgerLine.account == PENDING, LedgerLine.amount), else_=0)).label(
                    "pending"
                ),
            )
            .where(LedgerLine.member_id.is_not(None))
            .group_by(LedgerLine.member_id)
            .subquery()
        )
        lot_sums = (
            select(
                Lot.member_id.label("member_id"),
                func.sum(case((Lot.status == AVAILABLE, Lot.remaining), else_=0)).label(
                    "available"
                ),
                func.sum(case((Lot.status == PENDING, Lot.remaining), else_=0)).label("pending"),
            )
            .group_by(Lot.member_id)
            .subquery()
        )
        ledger_available = func.coalesce(line_sums.c.available, 0)
        ledger_pending = func.coalesce(line_sums.c.pending, 0)
        lots_available = func.coalesce(lot_sums.c.available, 0)
        lots_pending = func.coalesce(lot_sums.c.pending, 0)
        # One statement, so one snapshot: a posting in flight is either wholly in or out.
        rows = (
            await session.execute(
                select(
                    Account.member_id,
                    Account.available,
                    ledger_available,
                    lots_available,
                    Account.pending,
                    ledger_pending,
                    lots_pending,
                )
                .select_from(Account)
                .outerjoin(line_sums, line_sums.c.member_id == Account.member_id)
                .outerjoin(lot_sums, lot_sums.c.member_id == Account.member_id)
                .where(
                    or_(
                        Account.available != ledger_available,
                        Account.available != lots_available,
                        Account.pending != ledger_pending,
                        Account.pending != lots_pending,
                    )
                )
                .limit(100)
            )
        ).all()
        mismatches = [
            {
                "member_id": member_id,
                "stored_available": available,
                "ledger_available": int(l_avail),
                "lots_available": int(lots_avail),
                "stored_pending": pending,
                "ledger_pending": int(l_pend),
                "lots_pending": int(lots_pend),
            }
            for member_id, available, l_avail, lots_avail, pending, l_pend, lots_pend in rows
        ]
        accounts = await session.scalar(select(func.count()).select_from(Account))
        unbalanced = (
            await session.scalars(
                select(LedgerLine.entry_id)
                .group_by(LedgerLine.entry_id)
                .having(func.sum(LedgerLine.amount) != literal(0))
                .limit(100)
            )
        ).all()
        system = (
            await session.execute(
                select(LedgerLine.account, func.sum(LedgerLine.amount))
                .where(LedgerLine.member_id.is_(None))
                .group_by(LedgerLine.account)
            )
        ).all()
        entries = await session.scalar(select(func.count()).select_from(LedgerEntry))
        return {
            "balanced": not mismatches and not unbalanced,
            "accounts_checked": accounts or 0,
            "entries_checked": entries or 0,
            "mismatches": mismatches,
            "unbalanced_entries": list(unbalanced),
            "system_accounts": {account: int(total) for account, total in system},
            "checked_at": utcnow(),
        }
