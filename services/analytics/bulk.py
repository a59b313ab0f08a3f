"""Set-based writes of a batch's rows: one statement per table, whatever the row count.

Rows are given by column, ``{name: values}``, all the same length: what the buffer holds
transposes into that with ``zip`` at C speed, and PostgreSQL takes it as it is.

PostgreSQL: the rows travel as one array per column and the INSERT reads them back with
``unnest``, so a batch is one round trip and one set-based execution (an executemany is
one execution per row on the server, which profiled at most of a batch's time). The
arrays skip SQLAlchemy's per-element bind processing (``_Values``): a Python call per
value, a twentieth of ingest's CPU; what the columns' types would check is the callers'
to keep (timestamps aware and in UTC). SQLite, in-process: an executemany of the plain
INSERT, in chunks below its variable limit, with the columns' own types.

Statements are built once per shape and kept (``_statements``): building one costs about
as much as a small batch's Python work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic_core import to_json
from sqlalchemy import (
    JSON,
    BigInteger,
    ColumnElement,
    DateTime,
    Dialect,
    Interval,
    String,
    Table,
    Text,
    any_,
    bindparam,
    case,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
)
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeDecorator, TypeEngine

CHUNK = 1000  # rows per SQLite statement: far below its bound-variable limit

Columns = Mapping[str, Sequence[Any]]

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


def _moves(
    rule: str, old: ColumnElement[Any], new: ColumnElement[Any]
) -> ColumnElement[bool] | None:
    """When merging can change the row; None when it always may (a counter)."""
    if rule == EARLIEST:
        return new < old
    if rule == LATEST:
        return new > old
    return None


class _Values(TypeDecorator[Any]):
    """A column's values as one array parameter, handed to the driver as they are."""

    impl = pg.ARRAY
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> None:
        return None


# How a column's values travel to PostgreSQL. The driver encodes an array element by
# element with Python-level checks, about half a microsecond a value and most of a batch's
# driver time; one text of all the values costs it nothing, and the server splits it.
ARRAY = "array"
JOINED = "joined"  # NOT NULL text: the values joined by SEP, split by string_to_array
MICROS = "micros"  # NOT NULL timestamps: microseconds since the epoch, an int8 array
# The ASCII unit separator. JSON text never holds it raw (JSON escapes control characters);
# a text value that does sends that batch's column as an array instead.
SEP = "\x1f"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def _type_of(table: Table, name: str) -> TypeEngine[Any]:
    kind = table.c[name].type
    return kind.impl_instance if isinstance(kind, TypeDecorator) else kind


def _encoding(table: Table, name: str) -> str:
    column, kind = table.c[name], _type_of(table, name)
    if column.nullable:
        return ARRAY
    if isinstance(kind, String | JSON):
        return JOINED
    if isinstance(kind, DateTime):
        return MICROS
    return ARRAY


def _parameter(table: Table, name: str, encoding: str) -> Any:
    """The array of ``name``'s values, as the statement receives it."""
    kind = _type_of(table, name)
    if encoding == JOINED:
        text = bindparam(name, type_=Text)
        return cast(func.string_to_array(text, literal(SEP, Text)), pg.ARRAY(kind))
    if encoding == MICROS:
        return bindparam(name, type_=_Values(BigInteger))
    if isinstance(kind, JSON):  # the driver takes JSON as text: serialized per value
        return bindparam(name, type_=pg.ARRAY(kind))
    return bindparam(name, type_=_Values(kind))


def _value(encoding: str, column: Any) -> Any:
    if encoding == MICROS:
        since_epoch = column * literal_column("INTERVAL '1 microsecond'", Interval)
        return literal_column("TIMESTAMPTZ 'epoch'", DateTime(timezone=True)) + since_epoch
    return column


def _encoded(table: Table, name: str, values: Sequence[Any]) -> tuple[str, Any]:
    """(how ``values`` travel, the parameter they travel as)."""
    encoding = _encoding(table, name)
    if encoding == MICROS:
        return encoding, [(at - EPOCH) // MICROSECOND for at in values]
    if encoding == JOINED:
        if isinstance(_type_of(table, name), JSON):
            return encoding, SEP.join([to_json(value).decode() for value in values])
        joined = SEP.join(values)
        # One value fewer separators than values: none holds one. (A lone empty string
        # would split into no value at all.)
        if joined and joined.count(SEP) == len(values) - 1:
            return encoding, joined
    return ARRAY, values


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


@dataclass(frozen=True)
class Shape:
    """The columns of a batch's rows and how each travels (PostgreSQL), or None (SQLite)."""

    names: tuple[str, ...]
    encodings: tuple[str, ...] | None
    constants: tuple[str, ...] = ()


def encode(
    session: Session, model: Any, columns: Columns, constants: Mapping[str, Any] | None = None
) -> tuple[Shape, dict[str, Any] | list[dict[str, Any]]]:
    """The rows' shape and the statement's parameters: one per column on PostgreSQL,
    one dict per row on SQLite."""
    names, fixed = tuple(columns), dict(constants or {})
    if not is_postgres(session):
        extra = tuple(fixed.values())
        rows = [
            dict(zip((*names, *fixed), (*row, *extra), strict=True))
            for row in zip(*columns.values(), strict=True)
        ]
        return Shape(names, None, tuple(fixed)), rows
    table = table_of(model)
    encodings, params = [], dict(fixed)
    for name, values in columns.items():
        encoding, params[name] = _encoded(table, name, values)
        encodings.append(encoding)
    return Shape(names, tuple(encodings), tuple(fixed)), params


def insert_rows(session: Session, model: Any, shape: Shape) -> Any:
    """An INSERT of rows of ``shape`` (their parameters from ``encode``)."""
    table = table_of(model)
    if shape.encodings is None:
        return sqlite.insert(table)
    arrays = [
        _parameter(table, name, encoding)
        for name, encoding in zip(shape.names, shape.encodings, strict=True)
    ]
    rows = func.unnest(*arrays).table_valued(*shape.names).render_derived()
    values = [
        _value(encoding, rows.c[name])
        for name, encoding in zip(shape.names, shape.encodings, strict=True)
    ]
    values += [bindparam(name, type_=table.c[name].type) for name in shape.constants]
    return pg.insert(table).from_select([*shape.names, *shape.constants], select(*values))


def transposed(rows: Iterable[Sequence[Any]], width: int) -> list[Sequence[Any]]:
    """Rows (tuples of ``width``) as one sequence per column."""
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True))
    return columns or [()] * width


def size_of(columns: Columns) -> int:
    return len(next(iter(columns.values())))


def execute_rows(
    session: Session,
    stmt: Any,
    params: dict[str, Any] | list[dict[str, Any]],
    *,
    returning: bool = False,
) -> list[Any]:
    """Run an ``insert_rows`` statement; the rows it returns when ``returning``."""
    if isinstance(params, dict):
        result = session.execute(stmt, params)
        return list(result) if returning else []
    returned: list[Any] = []
    for at in range(0, len(params), CHUNK):
        result = session.execute(stmt, params[at : at + CHUNK])
        if returning:
            returned += result
    return returned


def upsert(
    session: Session, model: Any, columns: Columns, keys: list[str], merge: Mapping[str, str]
) -> None:
    """Insert rows, or merge each into the row with its key (``merge``: column -> rule).

    At most one row per key: PostgreSQL refuses to update a row twice in one statement.
    A row that only keeps the earliest and latest of its values is not rewritten when
    neither moves (no dead row version, no index entries).
    """
    if not size_of(columns):
        return
    shape, params = encode(session, model, columns)
    rules = tuple(merge.items())

    def build() -> Any:
        stmt = insert_rows(session, model, shape)
        table = table_of(model)
        moves = [_moves(rule, table.c[name], stmt.excluded[name]) for name, rule in rules]
        changed = [move for move in moves if move is not None]
        return stmt.on_conflict_do_update(
            index_elements=keys,
            set_={name: _merged(rule, table.c[name], stmt.excluded[name]) for name, rule in rules},
            where=or_(*changed) if len(changed) == len(moves) else None,
        )

    key = ("upsert", model, shape, tuple(keys), rules)
    execute_rows(session, _cached(key, build), params)


def insert_new(session: Session, model: Any, columns: Columns, keys: list[str]) -> list[Any]:
    """Insert rows that are not there yet; returns the key tuples actually inserted."""
    if not size_of(columns):
        return []
    shape, params = encode(session, model, columns)

    def build() -> Any:
        table = table_of(model)
        return (
            insert_rows(session, model, shape)
            .on_conflict_do_nothing(index_elements=keys)
            .returning(*(table.c[k] for k in keys))
        )

    stmt = _cached(("insert_new", model, shape, tuple(keys)), build)
    return [tuple(row) for row in execute_rows(session, stmt, params, returning=True)]


def insert_missing(
    session: Session,
    model: Any,
    columns: Columns,
    keys: list[str],
    constants: Mapping[str, Any] | None = None,
) -> None:
    """Insert rows that are not there yet, nothing returned; ``constants`` are columns with
    one value for every row."""
    if not size_of(columns):
        return
    shape, params = encode(session, model, columns, constants)

    def build() -> Any:
        stmt = insert_rows(session, model, shape)
        return stmt.on_conflict_do_nothing(index_elements=keys)

    stmt = _cached(("insert_missing", model, shape, tuple(keys)), build)
    execute_rows(session, stmt, params)


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
