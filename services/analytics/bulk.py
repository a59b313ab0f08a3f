"""Set-based writes of a batch's rows: one statement per table, whatever the row count.

PostgreSQL: the rows travel as one array per column and the INSERT reads them back with
``unnest``, so a batch is one round trip and one set-based execution (an executemany is
one execution per row on the server, which profiled at most of a batch's time). SQLite,
in-process: an executemany of the plain INSERT, in chunks below its variable limit.

Statements are built once per shape and kept (``_statements``): building one costs about
as much as a small batch's Python work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy import ColumnElement, Table, any_, bindparam, case, func, select
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

CHUNK = 1000  # rows per SQLite statement: far below its bound-variable limit

Rows = list[dict[str, Any]]

# How an upserted row merges into the row already there, per column.
ADD = "add"  # counters: old + new
EARLIEST = "earliest"
LATEST = "latest"
NEW = "new"  # the new value replaces the old
NEW_UNLESS_NULL = "new unless null"  # facts only some events carry


def _merged(rule: str, old: Any, new: Any) -> Any:
    if rule == ADD:
        return old + new
    if rule == EARLIEST:
        return case((new < old, new), else_=old)
    if rule == LATEST:
        return case((new > old, new), else_=old)
    if rule == NEW_UNLESS_NULL:
        return func.coalesce(new, old)
    assert rule == NEW, rule
    return new


_statements: dict[tuple[Any, ...], Any] = {}


def _cached(key: tuple[Any, ...], build: Callable[[], Any]) -> Any:
    stmt = _statements.get(key)
    if stmt is None:
        stmt = _statements[key] = build()
    return stmt


def table_of(model: Any) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def insert_rows(session: Session, model: Any, columns: Iterable[str]) -> Any:
    """An INSERT of ``columns`` whose rows are given to ``execute_rows``."""
    table, columns = table_of(model), list(columns)
    if not is_postgres(session):
        return sqlite.insert(table)
    arrays = [bindparam(name, type_=pg.ARRAY(table.c[name].type)) for name in columns]
    rows = func.unnest(*arrays).table_valued(*columns).render_derived()
    return pg.insert(table).from_select(columns, select(*(rows.c[name] for name in columns)))


def columns_of(rows: Rows) -> dict[str, list[Any]]:
    """The rows (all with the same keys) as one list per column: PostgreSQL's parameters."""
    return {name: [row[name] for row in rows] for name in rows[0]}


def execute_rows(session: Session, stmt: Any, rows: Rows, *, returning: bool = False) -> list[Any]:
    """Run an ``insert_rows`` statement over ``rows``; the rows it returns when ``returning``."""
    if is_postgres(session):
        result = session.execute(stmt, columns_of(rows))
        return list(result) if returning else []
    returned: list[Any] = []
    for at in range(0, len(rows), CHUNK):
        result = session.execute(stmt, rows[at : at + CHUNK])
        if returning:
            returned += result
    return returned


def upsert(
    session: Session, model: Any, rows: Rows, keys: list[str], merge: Mapping[str, str]
) -> None:
    """Insert rows, or merge each into the row with its key (``merge``: column -> rule).

    At most one row per key: PostgreSQL refuses to update a row twice in one statement.
    """
    if not rows:
        return
    columns, rules = tuple(rows[0]), tuple(merge.items())

    def build() -> Any:
        stmt = insert_rows(session, model, columns)
        table = table_of(model)
        return stmt.on_conflict_do_update(
            index_elements=keys,
            set_={name: _merged(rule, table.c[name], stmt.excluded[name]) for name, rule in rules},
        )

    key = ("upsert", is_postgres(session), model, columns, tuple(keys), rules)
    execute_rows(session, _cached(key, build), rows)


def insert_new(session: Session, model: Any, rows: Rows, keys: list[str]) -> list[Any]:
    """Insert rows that are not there yet; returns the key tuples actually inserted."""
    if not rows:
        return []
    columns = tuple(rows[0])

    def build() -> Any:
        table = table_of(model)
        return (
            insert_rows(session, model, columns)
            .on_conflict_do_nothing(index_elements=keys)
            .returning(*(table.c[k] for k in keys))
        )

    key = ("insert_new", is_postgres(session), model, columns, tuple(keys))
    stmt = _cached(key, build)
    return [tuple(row) for row in execute_rows(session, stmt, rows, returning=True)]


def insert_missing(session: Session, model: Any, rows: Rows, keys: list[str]) -> None:
    """Insert rows that are not there yet, nothing returned."""
    if not rows:
        return
    columns = tuple(rows[0])

    def build() -> Any:
        return insert_rows(session, model, columns).on_conflict_do_nothing(index_elements=keys)

    key = ("insert_missing", is_postgres(session), model, columns, tuple(keys))
    execute_rows(session, _cached(key, build), rows)


def cached(session: Session, key: tuple[Any, ...], build: Callable[[], Any]) -> Any:
    """A statement of another shape, built once per dialect and ``key``."""
    return _cached(("other", is_postgres(session), *key), build)


def one_of(session: Session, column: Any, values: Iterable[Any]) -> ColumnElement[bool]:
    """``column IN values``; on PostgreSQL ``= ANY(array)``, one statement text whatever
    the count (an IN list is a new prepared statement for every length)."""
    values = list(values)
    if is_postgres(session):
        return column == any_(bindparam("values", values, type_=pg.ARRAY(column.type)))  # type: ignore[no-any-return]
    return column.in_(values)  # type: ignore[no-any-return]
