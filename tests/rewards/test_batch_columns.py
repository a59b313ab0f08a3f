"""The group commit's PostgreSQL statement names its columns by hand: it must keep up with the
models, or a new column would silently be left out of every batched redemption."""

from __future__ import annotations

import pytest
from sqlalchemy import Table

from services.rewards.batch_writes import (
    ENTRY_COLUMNS,
    LINE_COLUMNS,
    OUTBOX_COLUMNS,
    REDEMPTION_COLUMNS,
)
from services.rewards.models import LedgerEntry, LedgerLine, Redemption
from shared.db import outbox_table

# Columns the statement leaves to the database on purpose: keys and bookkeeping it fills.
LEFT_TO_DATABASE = {
    "ledger_lines": {"id"},
    "outbox": {"id", "attempts", "sent_at", "last_error"},
}


@pytest.mark.parametrize(
    ("table", "columns"),
    [
        (LedgerEntry.__table__, ENTRY_COLUMNS),
        (LedgerLine.__table__, LINE_COLUMNS),
        (Redemption.__table__, REDEMPTION_COLUMNS),
        (outbox_table, OUTBOX_COLUMNS),
    ],
    ids=lambda value: getattr(value, "name", ""),
)
def test_the_batched_insert_writes_every_column_of_its_table(
    table: Table, columns: dict[str, str]
) -> None:
    expected = {column.name for column in table.columns} - LEFT_TO_DATABASE.get(table.name, set())
    assert set(columns) == expected
