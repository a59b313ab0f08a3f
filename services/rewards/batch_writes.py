"""Storing what a redemption batch decided: one statement per table, or one in all.

Every statement is a round trip, and on a busy host each round trip costs the
batch more than its rows do. On PostgreSQL the whole write is one statement whose
data-modifying ``WITH`` parts take each table's rows as one JSON document
(``json_to_recordset``): one round trip and one prepared statement whatever the batch
size. JSON rather than a typed array per column: asyncpg checks every element of an
array parameter against the collection ABCs, and with some sixty values a redemption
that was the batch's largest CPU cost; ``json.dumps`` is one C call per table.
Elsewhere (SQLite) each table gets one ``executemany``. Both write the same rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards.ledger import sql
from services.rewards.models import CatalogItem, Redemption
from shared.db import dialect_of, idempotency_table
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
            await session.execute(WRITE_ALL, self._documents())
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

    def _documents(self) -> dict[str, Any]:
        """The rows table by table, as the JSON documents ``WRITE_ALL`` binds."""
        return {
            "now": self.now,
            "entries": _json(self.entries, ENTRY_COLUMNS),
            "lines": _json(self.lines, LINE_COLUMNS),
            "lots": _json_pairs(self.lots, "id", "take"),
            "accounts": _json_pairs(self.accounts, "member_id", "amount"),
            "stock": _json_pairs(self.stock, "id", "quantity"),
            "redemptions": _json(self.redemptions, REDEMPTION_COLUMNS),
            "outbox": _json(self.outbox, OUTBOX_COLUMNS),
            "completed": _json(
                [{**c, "headers": json.dumps(c["headers"])} for c in self.completed],
                COMPLETED_COLUMNS,
            ),
            "dropped": self.dropped,
        }


def _plain(value: Any) -> str:
    """JSON for what ``json`` does not know: timestamps, and bytes as bytea's hex input."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    raise TypeError(f"{type(value).__name__} has no JSON form here")


def _json(rows: list[dict[str, Any]], columns: dict[str, str]) -> str:
    return json.dumps([{name: row[name] for name in columns} for row in rows], default=_plain)


def _json_pairs(amounts: dict[str, int], key: str, value: str) -> str:
    """``{id: n}`` as rows in id order, the order locks are taken in."""
    return json.dumps([{key: k, value: n} for k, n in sorted(amounts.items())])


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
COMPLETED_COLUMNS = {"scope": "varchar", "status": "int", "body": "bytea", "headers": "json"}


def _records(name: str, columns: dict[str, str], alias: str | None = None) -> str:
    """The rows of the JSON document ``:name`` as a relation (``alias``, else ``name``) with
    typed columns. A ``json`` column arrives as JSON text (as the models bind it) and is
    cast where it is used."""
    kinds = ", ".join(f"{c} {'text' if kind == 'json' else kind}" for c, kind in columns.items())
    return f"json_to_recordset(CAST(:{name} AS json)) AS {alias or name}({kinds})"


def _value(name: str, column: str, kind: str) -> str:
    return f"CAST({name}.{column} AS json)" if kind == "json" else f"{name}.{column}"


def _insert(table: str, name: str, columns: dict[str, str]) -> str:
    values = ", ".join(_value(name, column, kind) for column, kind in columns.items())
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608 - constant names, binds
        f"SELECT {values} FROM {_records(name, columns)}"
    )


# Each part touches rows no other part touches (a lot, an account, an item, a key once),
# and PostgreSQL checks the lines' foreign key to their entries at the statement's end.
# Built from the constant column maps above; every value is a bind.
WRITE_ALL = text(
    f"""
WITH entries AS ({_insert("ledger_entries", "entries", ENTRY_COLUMNS)}),
lines AS ({_insert("ledger_lines", "lines", LINE_COLUMNS)}),
lots AS (
    UPDATE lots SET remaining = lots.remaining - taken.take
    FROM {_records("lots", {"id": "varchar", "take": "int"}, "taken")}
    WHERE lots.id = taken.id
),
accounts AS (
    UPDATE accounts SET available = accounts.available - spent.amount, updated_at = :now
    FROM {_records("accounts", {"member_id": "varchar", "amount": "int"}, "spent")}
    WHERE accounts.member_id = spent.member_id
),
stock AS (
    UPDATE catalog_items SET stock = catalog_items.stock - sold.quantity
    FROM {_records("stock", {"id": "varchar", "quantity": "int"}, "sold")}
    WHERE catalog_items.id = sold.id
),
redemptions AS ({_insert("redemptions", "redemptions", REDEMPTION_COLUMNS)}),
outbox AS ({_insert("outbox", "outbox", OUTBOX_COLUMNS)}),
completed AS (
    UPDATE idempotency_keys
    SET status_code = completed.status, response_body = completed.body,
        response_headers = CAST(completed.headers AS json), completed_at = :now
    FROM {_records("completed", COMPLETED_COLUMNS)}
    WHERE idempotency_keys.scope = completed.scope
),
dropped AS (DELETE FROM idempotency_keys WHERE scope = ANY(CAST(:dropped AS varchar[])))
SELECT 1
"""  # noqa: S608
)
