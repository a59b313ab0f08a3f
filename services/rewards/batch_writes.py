"""Storing what a redemption batch decided: one statement per table, or one in all.

Every statement is a round trip, and on a busy host each round trip costs the
batch more than its rows do. On PostgreSQL the whole write is one statement whose
data-modifying ``WITH`` parts take their rows as arrays (``unnest``): one round trip
and one prepared statement whatever the batch size. Elsewhere (SQLite) each table
gets one ``executemany``. Both write the same rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards.ledger import sql
from services.rewards.ledger.postings import dialect_of
from services.rewards.models import CatalogItem, Redemption
from shared.db import idempotency_table
from shared.outbox import INSERT_EVENTS

ITEMS = cast(Table, CatalogItem.__table__)
KEYS = idempotency_table
TAKE_STOCK = (
    update(ITEMS)
    .where(ITEMS.c.id == bindparam("b_item"))
    .values(stock=ITEMS.c.stock - bindparam("b_quantity"))
)
INSERT_REDEMPTIONS = cast(Table, Redemption.__table__).insert()
COMPLETE_CLAIMS = (
    update(KEYS)
    .where(KEYS.c.scope == bindparam("b_scope"))
    .values(
        status_code=bindparam("b_status"),
        response_body=bindparam("b_body"),
        response_headers=bindparam("b_headers", type_=KEYS.c.response_headers.type),
        completed_at=bindparam("b_now"),
    )
)
DROP_CLAIMS = delete(KEYS).where(KEYS.c.scope.in_(bindparam("b_scopes", expanding=True)))


@dataclass
class BatchWrites:
    now: datetime
    entries: list[dict[str, Any]] = field(default_factory=list)
    lines: list[dict[str, Any]] = field(default_factory=list)
    lots: dict[str, int] = field(default_factory=dict)  # lot id -> points taken
    accounts: dict[str, int] = field(default_factory=dict)  # member -> points spent
    stock: dict[str, int] = field(default_factory=dict)  # item id -> quantity taken
    redemptions: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    completed: list[dict[str, Any]] = field(default_factory=list)  # scope, status, body, headers
    dropped: list[str] = field(default_factory=list)  # claims of refused requests

    async def write(self, session: AsyncSession) -> None:
        if not (self.entries or self.dropped):
            return
        if dialect_of(session) == "postgresql":
            await session.execute(WRITE_ALL, self._arrays())
        else:
            await self._write_each(session)
        if self.outbox:
            session.info["outbox_dirty"] = True  # wakes the relay after the commit

    async def _write_each(self, session: AsyncSession) -> None:
        if self.entries:
            await session.execute(sql.INSERT_ENTRIES, self.entries)
            await session.execute(sql.INSERT_LINES, self.lines)
            await session.execute(
                sql.TAKE_FROM_LOT,
                [{"b_lot": lot, "b_take": n} for lot, n in sorted(self.lots.items())],
            )
            await session.execute(
                sql.SPEND_FROM_ACCOUNT,
                [
                    {"b_member": m, "b_amount": n, "b_now": self.now}
                    for m, n in sorted(self.accounts.items())
                ],
            )
            if self.stock:
                await session.execute(
                    TAKE_STOCK,
                    [{"b_item": item, "b_quantity": n} for item, n in sorted(self.stock.items())],
                )
            await session.execute(INSERT_REDEMPTIONS, self.redemptions)
            await session.execute(INSERT_EVENTS, self.outbox)
            await session.execute(
                COMPLETE_CLAIMS,
                [
                    {
                        "b_scope": c["scope"],
                        "b_status": c["status"],
                        "b_body": c["body"],
                        "b_headers": c["headers"],
                        "b_now": self.now,
                    }
                    for c in self.completed
                ],
            )
        if self.dropped:
            await session.execute(DROP_CLAIMS, {"b_scopes": self.dropped})

    def _arrays(self) -> dict[str, Any]:
        """The rows column by column, as ``WRITE_ALL`` binds them."""
        e, ln, r, o, c = self.entries, self.lines, self.redemptions, self.outbox, self.completed
        lots, accounts = sorted(self.lots.items()), sorted(self.accounts.items())
        stock = sorted(self.stock.items())
        return {
            "now": self.now,
            **{f"e_{k}": [row[k] for row in e] for k in ENTRY_COLUMNS},
            **{f"l_{k}": [row[k] for row in ln] for k in LINE_COLUMNS},
            "t_lot": [lot for lot, _ in lots],
            "t_take": [n for _, n in lots],
            "a_member": [m for m, _ in accounts],
            "a_amount": [n for _, n in accounts],
            "s_item": [item for item, _ in stock],
            "s_quantity": [n for _, n in stock],
            **{f"r_{k}": [row[k] for row in r] for k in REDEMPTION_COLUMNS},
            **{f"o_{k}": [row[k] for row in o] for k in OUTBOX_COLUMNS},
            "k_scope": [row["scope"] for row in c],
            "k_status": [row["status"] for row in c],
            "k_body": [row["body"] for row in c],
            "k_headers": [json.dumps(row["headers"]) for row in c],
            "d_scope": self.dropped,
        }


ENTRY_COLUMNS = {
    "id": "varchar",
    "member_id": "varchar",
    "kind": "varchar",
    "reason_code": "varchar",
    "reason": "varchar",
    "amount": "int",
    "available_delta": "int",
    "pending_delta": "int",
    "source": "varchar",
    "rule_id": "varchar",
    "operator_id": "varchar",
    "occurred_at": "timestamptz",
    "created_at": "timestamptz",
}
LINE_COLUMNS = {
    "entry_id": "varchar",
    "member_id": "varchar",
    "account": "varchar",
    "lot_id": "varchar",
    "amount": "int",
}
REDEMPTION_COLUMNS = {
    "id": "varchar",
    "member_id": "varchar",
    "item_id": "varchar",
    "item_kind": "varchar",
    "quantity": "int",
    "points": "int",
    "entry_id": "varchar",
    "coupon_code": "varchar",
    "source": "varchar",
    "shipping_address": "text",
    "note": "varchar",
    "created_at": "timestamptz",
}
OUTBOX_COLUMNS = {
    "event_id": "varchar",
    "topic": "varchar",
    "key": "varchar",
    "type": "varchar",
    "payload": "text",
    "headers": "json",
    "created_at": "timestamptz",
}


def _unnest(prefix: str, columns: dict[str, str]) -> str:
    arrays = ", ".join(f"CAST(:{prefix}_{name} AS {kind}[])" for name, kind in columns.items())
    return f"SELECT * FROM unnest({arrays})"  # noqa: S608 - constant names, values are binds


def _insert(table: str, prefix: str, columns: dict[str, str]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) {_unnest(prefix, columns)}"


# Each part touches rows no other part touches (a lot, an account, an item, a key once),
# and PostgreSQL checks the lines' foreign key to their entries at the statement's end.
# Built from the constant column maps above; every value is a bind.
WRITE_ALL = text(
    f"""
WITH entries AS ({_insert("ledger_entries", "e", ENTRY_COLUMNS)}),
lines AS ({_insert("ledger_lines", "l", LINE_COLUMNS)}),
lots AS (
    UPDATE lots SET remaining = lots.remaining - t.take
    FROM unnest(CAST(:t_lot AS varchar[]), CAST(:t_take AS int[])) AS t(id, take)
    WHERE lots.id = t.id
),
accounts AS (
    UPDATE accounts SET available = accounts.available - a.amount, updated_at = :now
    FROM unnest(CAST(:a_member AS varchar[]), CAST(:a_amount AS int[])) AS a(member_id, amount)
    WHERE accounts.member_id = a.member_id
),
stock AS (
    UPDATE catalog_items SET stock = catalog_items.stock - s.quantity
    FROM unnest(CAST(:s_item AS varchar[]), CAST(:s_quantity AS int[])) AS s(id, quantity)
    WHERE catalog_items.id = s.id
),
redemptions AS ({_insert("redemptions", "r", REDEMPTION_COLUMNS)}),
outbox AS ({_insert("outbox", "o", OUTBOX_COLUMNS)}),
completed AS (
    UPDATE idempotency_keys
    SET status_code = k.status, response_body = k.body, response_headers = k.headers,
        completed_at = :now
    FROM unnest(
        CAST(:k_scope AS varchar[]), CAST(:k_status AS int[]), CAST(:k_body AS bytea[]),
        CAST(:k_headers AS json[])
    ) AS k(scope, status, body, headers)
    WHERE idempotency_keys.scope = k.scope
),
dropped AS (DELETE FROM idempotency_keys WHERE scope = ANY(CAST(:d_scope AS varchar[])))
SELECT 1
"""  # noqa: S608
)
