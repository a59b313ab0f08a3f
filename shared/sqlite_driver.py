"""SQLAlchemy's aiosqlite driver, one trip to the connection's thread per statement.

aiosqlite runs each call on the connection's own thread and hands the result back to
the event loop; a trip costs about 50 µs of CPU (queue, thread wake-up, loop wake-up).
SQLAlchemy's adapter makes four trips per statement: open a cursor, execute, fetch the
rows, close the cursor; then one to commit and one, as the connection goes back to the
pool, to roll back. A write request of four statements spent a millisecond on trips
alone. Here the cursor is opened, run, read and closed in one trip, the way aiosqlite's
own ``execute_fetchall`` does it, and a commit or rollback with no transaction open makes
none. Server-side (streaming) cursors keep SQLAlchemy's adapter.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)

# What a statement leaves behind: description, rows, rowcount, lastrowid.
_Outcome = tuple[Any, list[Any], int, int | None]


def _run(conn: sqlite3.Connection, operation: str, parameters: Any, many: bool) -> _Outcome:
    """On the connection's thread: the whole life of one cursor."""
    cursor = conn.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        else:
            cursor.execute(operation, () if parameters is None else parameters)
        rows = cursor.fetchall() if cursor.description else []
        return cursor.description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    __slots__ = ("_arraysize", "_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: Any) -> None:
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None
        self._arraysize = 1
        super().__init__(adapt_connection)

    # No aiosqlite cursor: each statement brings its own on the connection's thread.
    def _make_new_cursor(self, connection: Any) -> Any:
        return None

    def _aenter_cursor(self, cursor: Any) -> Any:
        return None

    async def _async_soft_close(self) -> None:
        """Nothing to close: the statement's cursor closed on the connection's thread."""

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> Any:
        return self._lastrowid

    @property
    def arraysize(self) -> int:
        return self._arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._arraysize = value

    async def _trip(self, operation: str, parameters: Any, many: bool) -> None:
        connection: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        # aiosqlite's own helpers run this way: a function given the sqlite3 connection.
        on_thread: Callable[..., Awaitable[_Outcome]] = connection._execute
        async with self._adapt_connection._execute_mutex:
            outcome = await on_thread(_run, connection._conn, operation, parameters, many)
        self._description, rows, self._rowcount, self._lastrowid = outcome
        self._rows = collections.deque(rows)

    async def _execute_async(self, operation: Any, parameters: Any) -> None:
        await self._trip(operation, parameters, many=False)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Sequence[Any]) -> None:
        await self._trip(operation, seq_of_parameters, many=True)


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = OneTripCursor

    # Python's sqlite3 opens a transaction only before a write, so a request that only read
    # has none to end, and a connection going back to the pool after its commit has none to
    # roll back: no trip for either.
    def commit(self) -> None:
        if self._connection.in_transaction:
            super().commit()

    def rollback(self) -> None:
        if self._connection.in_transaction:
            super().rollback()


class OneTripDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """Pass as ``module=`` to ``create_async_engine`` for a ``sqlite+aiosqlite`` URL."""

    def __init__(self) -> None:
        super().__init__(aiosqlite, sqlite3)

    def connect(self, *arg: Any, **kw: Any) -> OneTripConnection:
        # SQLAlchemy's connect opens the aiosqlite connection (and daemonises its thread);
        # only the adapter around it changes.
        adapted = super().connect(*arg, **kw)
        return OneTripConnection(self, adapted._connection)
