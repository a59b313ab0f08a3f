"""The SQLite driver: one trip to aiosqlite's thread per statement, DB-API results intact."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from shared.db import Database


@pytest.fixture
async def db(tmp_path: Path) -> Any:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'driver.db'}")
    async with database.engine.begin() as conn:
        await conn.execute(
            text("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE, n INT)")
        )
    yield database
    await database.dispose()


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the functions sent to aiosqlite's connection thread."""
    sent: list[str] = []
    original: Callable[..., Awaitable[Any]] = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(getattr(fn, "__name__", repr(fn)))
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    return sent


async def test_a_statement_is_one_trip_to_the_connection_thread(
    db: Database, trips: list[str]
) -> None:
    async with db.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))  # the pool's first checkout settles first
        trips.clear()
        rows = (await conn.execute(text("SELECT :a AS a, :b AS b"), {"a": 1, "b": "x"})).all()
        assert trips == ["_run"]
    assert [tuple(r) for r in rows] == [(1, "x")]


async def failing_unit_of_work(db: Database) -> None:
    with contextlib.suppress(RuntimeError):
        async with db.session() as session:
            await session.execute(text("INSERT INTO t (name, n) VALUES ('undone', 2)"))
            raise RuntimeError("the unit of work fails")


async def test_only_an_open_transaction_costs_a_commit_or_rollback_trip(
    db: Database, trips: list[str]
) -> None:
    async with db.session() as session:  # reads only: sqlite3 opened no transaction
        await session.execute(text("SELECT count(*) FROM t"))
    assert trips == ["_run"]
    trips.clear()
    async with db.session() as session:
        await session.execute(text("INSERT INTO t (name, n) VALUES ('kept', 1)"))
    assert trips == ["_run", "commit"]  # and no rollback as the connection goes back
    trips.clear()
    await failing_unit_of_work(db)
    assert trips == ["_run", "rollback"]
    async with db.engine.connect() as conn:
        names = (await conn.execute(text("SELECT name FROM t"))).scalars().all()
    assert names == ["kept"]


async def test_rowcount_lastrowid_returning_and_executemany(db: Database) -> None:
    async with db.engine.begin() as conn:
        inserted = await conn.execute(text("INSERT INTO t (name, n) VALUES ('a', 1)"))
        assert inserted.lastrowid == 1
        assert inserted.rowcount == 1
        many = [{"name": f"m{i}", "n": i} for i in range(5)]
        await conn.execute(text("INSERT INTO t (name, n) VALUES (:name, :n)"), many)
        updated = await conn.execute(text("UPDATE t SET n = n + 10 WHERE n < 3"))
        assert updated.rowcount == 4  # a (1) and m0, m1, m2
        returned = await conn.execute(
            text("INSERT INTO t (name, n) VALUES ('r', 7) RETURNING id, n")
        )
        assert [tuple(r) for r in returned] == [(7, 7)]
        result = await conn.execute(text("SELECT name, n FROM t ORDER BY id"))
        assert list(result.keys()) == ["name", "n"]
        assert [tuple(r) for r in result.fetchmany()] == [("a", 11)]
        assert [tuple(r) for r in result] == [
            ("m0", 10), ("m1", 11), ("m2", 12), ("m3", 3), ("m4", 4), ("r", 7),
        ]  # fmt: skip


async def test_an_error_is_sqlalchemys_and_leaves_the_connection_usable(db: Database) -> None:
    async with db.engine.connect() as conn:
        await conn.execute(text("INSERT INTO t (name, n) VALUES ('dup', 1)"))
        with pytest.raises(IntegrityError):
            await conn.execute(text("INSERT INTO t (name, n) VALUES ('dup', 2)"))
        await conn.rollback()
        assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 0


async def test_streaming_results_still_work(db: Database) -> None:
    async with db.engine.begin() as conn:
        rows = [{"name": f"s{i}", "n": i} for i in range(50)]
        await conn.execute(text("INSERT INTO t (name, n) VALUES (:name, :n)"), rows)
    async with db.engine.connect() as conn:
        stream = await conn.stream(text("SELECT n FROM t ORDER BY n"))
        assert [n async for (n,) in stream] == list(range(50))
