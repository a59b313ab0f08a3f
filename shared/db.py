"""Async SQLAlchemy engine and sessions for SQLite and PostgreSQL, and the platform tables.

Every service database carries three platform tables next to its own: the
outbox (events waiting for the relay), the inbox (event ids a consumer has
applied) and the idempotency keys of its POST routes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ColumnElement,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    any_,
    bindparam,
    event,
    func,
    select,
    text,
)
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session
from sqlalchemy.pool import ConnectionPoolEntry

from shared.sqlite_driver import OneTripDBAPI

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT autoincrement is not a rowid alias on SQLite; INTEGER there keeps it one.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC, on SQLite (which drops the zone) too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime; use shared.db.utcnow()")
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


platform_metadata = MetaData(naming_convention=NAMING_CONVENTION)

OUTBOX_PENDING = text("sent_at IS NULL")
OUTBOX_SENT = text("sent_at IS NOT NULL")

outbox_table = Table(
    "outbox",
    platform_metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    # Not unique-indexed: 122 random bits, never looked up here (shared.migrations, v3).
    Column("event_id", String(36), nullable=False),
    Column("topic", String(200), nullable=False),
    Column("key", String(200), nullable=False),
    Column("type", String(200), nullable=False),
    Column("payload", Text, nullable=False),
    Column("headers", JSON, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("sent_at", UtcDateTime(), nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text, nullable=True),
    # Partial, so the relay's "pending, in id order" reads only pending rows: a marked
    # row leaves the index instead of piling up in front of the pending ones as a dead
    # entry each read walks again. Purging old sent rows has its own.
    Index("ix_outbox_pending", "id", postgresql_where=OUTBOX_PENDING, sqlite_where=OUTBOX_PENDING),
    Index("ix_outbox_sent_at", "sent_at", postgresql_where=OUTBOX_SENT, sqlite_where=OUTBOX_SENT),
)

inbox_table = Table(
    "inbox",
    platform_metadata,
    Column("consumer", String(100), primary_key=True),
    Column("event_id", String(36), primary_key=True),
    Column("type", String(200), nullable=False),
    Column("processed_at", UtcDateTime(), nullable=False),
)

idempotency_table = Table(
    "idempotency_keys",
    platform_metadata,
    Column("scope", String(400), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("response_body", LargeBinary, nullable=True),
    Column("response_headers", JSON, nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("completed_at", UtcDateTime(), nullable=True),
    Index("ix_idempotency_keys_created_at", "created_at"),
)


def dialect_of(session: AsyncSession) -> str:
    """The session's dialect name: ``postgresql`` or ``sqlite``."""
    return session.bind.dialect.name if session.bind else "sqlite"


def dialect_insert(table: Table | type[Any], dialect: str) -> pg.Insert | sqlite.Insert:
    """An INSERT that supports ``ON CONFLICT`` on ``dialect`` (PostgreSQL or SQLite), for
    statements built once per dialect. ``table`` is a Core table or a mapped class."""
    return pg.insert(table) if dialect == "postgresql" else sqlite.insert(table)


def conflict_insert(session: AsyncSession, table: Table | type[Any]) -> pg.Insert | sqlite.Insert:
    """``dialect_insert`` on the session's dialect."""
    return dialect_insert(table, dialect_of(session))


def in_bound_list(column: ColumnElement[Any], name: str, dialect: str) -> ColumnElement[bool]:
    """``column`` is in the list bound as ``name``, passed as one parameter whatever its
    length: ``= ANY(array)`` on PostgreSQL, ``IN (SELECT value FROM json_each(json))`` on
    SQLite. The statement compiles once and stays cached, where an expanding ``IN`` is
    rendered and bound value by value on every execution."""
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=pg.ARRAY(column.type)))
    values = func.json_each(bindparam(name, type_=JSON)).table_valued("value")
    return column.in_(select(values.c.value))


def utcnow() -> datetime:
    return datetime.now(UTC)


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the single writer; busy_timeout queues writers.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def committed_before(session: AsyncSession) -> bool:
    """Whether ``session`` has committed at least once (a saga's first step, say)."""
    return bool(session.info.get("committed"))


class NotingSession(Session):
    """A session that remembers in ``info`` that it has committed (``committed_before``)."""


@event.listens_for(NotingSession, "after_commit")
def _note_commit(session: Session) -> None:
    session.info["committed"] = True


class Database:
    """One engine and session factory per service.

    ``session()`` is the unit of work: it commits once at the end and rolls back
    on error. Callbacks registered with ``on_commit`` run after a commit that
    touched the outbox, so the relay wakes without polling delay.
    """

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            # Ten kept: the bounded requests (shared.app) plus relay, consumer and jobs. With
            # the default five, overflow connections were opened and closed under load, about
            # a millisecond of CPU each.
            kwargs.update(connect_args={"timeout": 10}, pool_size=10, max_overflow=10)
            if self.url.startswith("sqlite+aiosqlite"):
                kwargs["module"] = OneTripDBAPI()
        else:
            # No pre-ping: with asyncpg it costs three round trips (BEGIN, ping, ROLLBACK) on
            # every checkout. A dropped connection fails its one request with a 503 instead,
            # and the disconnect invalidates the rest of the pool (tests/chaos/test_database.py).
            kwargs.update(pool_size=10, max_overflow=20, pool_recycle=1800)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessionmaker = async_sessionmaker(
            self.engine, expire_on_commit=False, sync_session_class=NotingSession
        )
        self._commit_hooks: list[Callable[[], None]] = []

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @property
    def sync_engine(self) -> Engine:
        return self.engine.sync_engine

    def on_commit(self, hook: Callable[[], None]) -> None:
        self._commit_hooks.append(hook)

    async def commit(self, session: AsyncSession) -> None:
        await session.commit()
        if session.info.pop("outbox_dirty", False):
            for hook in self._commit_hooks:
                hook()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessionmaker() as session:
            try:
                yield session
                await self.commit(session)
            except BaseException:
                await session.rollback()
                raise

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
