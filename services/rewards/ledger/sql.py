"""The ledger's hot statements, built once: every earned event and every spend runs them.

Building a SQLAlchemy statement costs more Python time than PostgreSQL needs to run
these; prebuilt statements with bind parameters keep the per-event overhead low.
"""

from __future__ import annotations

from functools import cache
from typing import Any, cast

from sqlalchemy import Integer, Table, bindparam, func, insert, select, update

from services.rewards.models import Account, LedgerEntry, LedgerLine, Lot
from shared.db import dialect_insert, in_bound_list

ACCOUNTS = cast(Table, Account.__table__)
ENTRIES = cast(Table, LedgerEntry.__table__)
LINES = cast(Table, LedgerLine.__table__)
LOTS = cast(Table, Lot.__table__)
BALANCE = (ACCOUNTS.c.available, ACCOUNTS.c.pending, ACCOUNTS.c.lifetime, ACCOUNTS.c.tier_code)


@cache
def lock_account(dialect: str) -> Any:
    """Create-or-touch the account row: a row lock on PostgreSQL, the write lock on SQLite."""
    stmt = dialect_insert(ACCOUNTS, dialect).values(
        member_id=bindparam("b_member"),
        available=0,
        pending=0,
        lifetime=0,
        created_at=bindparam("b_now"),
        updated_at=bindparam("b_now"),
    )
    return stmt.on_conflict_do_update(
        index_elements=["member_id"], set_={"updated_at": stmt.excluded.updated_at}
    ).returning(*BALANCE)


@cache
def credit_account(dialect: str) -> Any:
    """Create-or-credit in one statement, for postings that need nothing read first."""
    return _credit_upsert(dialect).returning(*BALANCE)


@cache
def credit_accounts(dialect: str) -> Any:
    """``credit_account`` for many members at once; rows name their member."""
    return _credit_upsert(dialect).returning(ACCOUNTS.c.member_id, *BALANCE)


def _credit_upsert(dialect: str) -> Any:
    stmt = dialect_insert(ACCOUNTS, dialect).values(
        member_id=bindparam("b_member"),
        available=bindparam("b_available"),
        pending=bindparam("b_pending"),
        lifetime=bindparam("b_lifetime"),
        created_at=bindparam("b_created"),  # a bind used twice breaks multi-row VALUES
        updated_at=bindparam("b_now"),
    )
    return stmt.on_conflict_do_update(
        index_elements=["member_id"],
        set_={
            "available": ACCOUNTS.c.available + stmt.excluded.available,
            "pending": ACCOUNTS.c.pending + stmt.excluded.pending,
            "lifetime": ACCOUNTS.c.lifetime + stmt.excluded.lifetime,
            "updated_at": stmt.excluded.updated_at,
        },
    )


@cache
def insert_entry(dialect: str) -> Any:
    return (
        dialect_insert(ENTRIES, dialect)
        .on_conflict_do_nothing(index_elements=["source"])
        .returning(ENTRIES.c.id)
    )


MOVE = (
    update(ACCOUNTS)
    .where(ACCOUNTS.c.member_id == bindparam("b_member"))
    .values(
        available=ACCOUNTS.c.available + bindparam("b_available"),
        pending=ACCOUNTS.c.pending + bindparam("b_pending"),
        lifetime=ACCOUNTS.c.lifetime + bindparam("b_lifetime"),
        updated_at=bindparam("b_now"),
    )
    .returning(*BALANCE)
)

DEBIT = (
    update(ACCOUNTS)
    .where(
        ACCOUNTS.c.member_id == bindparam("b_member"),
        ACCOUNTS.c.available >= bindparam("b_amount"),
    )
    .values(available=ACCOUNTS.c.available - bindparam("b_amount"), updated_at=bindparam("b_now"))
    .returning(*BALANCE)
)

AVAILABLE_BALANCE = select(ACCOUNTS.c.available).where(
    ACCOUNTS.c.member_id == bindparam("b_member")
)

INSERT_LINES = insert(LINES)
INSERT_LOT = insert(LOTS)

SPENDABLE_LOTS = (
    select(LOTS.c.id, LOTS.c.remaining)
    .where(
        LOTS.c.member_id == bindparam("b_member"),
        LOTS.c.status == "available",
        LOTS.c.remaining > 0,
    )
    .order_by(LOTS.c.expires_at.asc().nulls_last(), LOTS.c.created_at, LOTS.c.id)
    .limit(bindparam("b_limit", type_=Integer))
)

TAKE_FROM_LOT = (
    update(LOTS)
    .where(LOTS.c.id == bindparam("b_lot"))
    .values(remaining=LOTS.c.remaining - bindparam("b_take"))
)


# -- many spends in one transaction (ledger.batch) -------------------------------------


@cache
def lock_accounts(dialect: str) -> Any:
    return (
        select(ACCOUNTS.c.member_id, *BALANCE)
        .where(in_bound_list(ACCOUNTS.c.member_id, "b_members", dialect))
        .order_by(ACCOUNTS.c.member_id)
        .with_for_update()
    )


_LOT_ORDER = (LOTS.c.expires_at.asc().nulls_last(), LOTS.c.created_at, LOTS.c.id)


@cache
def spendable_lots_of(dialect: str) -> Any:
    """``SPENDABLE_LOTS`` for many members: the first ``b_limit`` lots of each, in spending
    order."""
    ranked = (
        select(
            LOTS.c.member_id,
            LOTS.c.id,
            LOTS.c.remaining,
            func.row_number()
            .over(partition_by=LOTS.c.member_id, order_by=_LOT_ORDER)
            .label("rank"),
        )
        .where(
            in_bound_list(LOTS.c.member_id, "b_members", dialect),
            LOTS.c.status == "available",
            LOTS.c.remaining > 0,
        )
        .subquery()
    )
    return (
        select(ranked.c.member_id, ranked.c.id, ranked.c.remaining)
        .where(ranked.c.rank <= bindparam("b_limit", type_=Integer))
        .order_by(ranked.c.member_id, ranked.c.rank)
    )


# A second entry for one source fails the statement, and with it the batch.
INSERT_ENTRIES = insert(ENTRIES)

SPEND_FROM_ACCOUNT = (
    update(ACCOUNTS)
    .where(ACCOUNTS.c.member_id == bindparam("b_member"))
    .values(available=ACCOUNTS.c.available - bindparam("b_amount"), updated_at=bindparam("b_now"))
)
