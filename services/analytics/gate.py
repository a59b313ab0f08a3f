"""Live ingest and a rebuild never write the rollups at the same time.

Every consumer transaction enters the gate once, before its first handler runs; a rebuild
closes it for its whole run. PostgreSQL: consumers take a shared transaction-level
advisory lock (``pg_try_advisory_xact_lock_shared``), the rebuild holds the exclusive one
on its own connection, so every replica of the service is held off, and closing waits for
the consumer transactions already inside to commit. SQLite (one process): a set of the
databases being rebuilt in this process; a consumer transaction already inside holds
SQLite's write lock, so the rebuild's first write waits for it to commit.

A consumer that finds the gate closed raises ``RebuildInProgress``: its transaction rolls
back (inbox claims and all), the shared consumer retries it with backoff as a transient
error, and the offsets are not committed, so nothing is lost; it applies once the
rebuild is done.
"""

from __future__ import annotations

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

# Advisory lock keys (PostgreSQL): the gate, and the lock only a running rebuild holds.
GATE_LOCK = 7_340_072
OWNER_LOCK = 7_340_073
INSIDE = "analytics.gate"

_closed: set[str] = set()  # SQLite: databases this process is rebuilding


class RebuildInProgress(TimeoutError):
    """A rebuild holds the rollups. A TimeoutError because the shared consumer retries
    those ("not now") without limit instead of dead-lettering the event."""


def database_key(engine: AsyncEngine) -> str:
    return engine.url.render_as_string(hide_password=True)


def is_postgres(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "postgresql"


async def enter(session: AsyncSession) -> None:
    """Let this consumer transaction write rollups, or raise while a rebuild runs."""
    if session.info.get(INSIDE):
        return
    engine = session.bind
    assert isinstance(engine, AsyncEngine)
    if is_postgres(engine):
        inside = await session.scalar(
            text("SELECT pg_try_advisory_xact_lock_shared(:key)"), {"key": GATE_LOCK}
        )
    else:
        inside = database_key(engine) not in _closed
    if not inside:
        raise RebuildInProgress("the analytics rollups are being rebuilt; retrying later")
    session.info[INSIDE] = True


def _left(session: Session) -> None:
    session.info.pop(INSIDE, None)


event.listen(Session, "after_commit", _left)
event.listen(Session, "after_rollback", _left)


class RebuildLock:
    """What a running rebuild holds: the owner lock (one rebuild at a time) and the gate."""

    def __init__(self, engine: AsyncEngine, conn: AsyncConnection | None) -> None:
        self.engine = engine
        self.conn = conn  # PostgreSQL: the connection whose session holds the locks

    @classmethod
    async def take(cls, engine: AsyncEngine) -> RebuildLock | None:
        """The owner lock, or None when another rebuild (on any replica) holds it."""
        if not is_postgres(engine):
            if database_key(engine) in _closed:
                return None
            _closed.add(database_key(engine))  # owner and gate at once: one process
            return cls(engine, None)
        conn = await engine.connect()
        try:
            owned = await conn.scalar(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": OWNER_LOCK}
            )
            await conn.commit()  # session-level locks outlive the transaction
        except BaseException:
            await conn.close()
            raise
        if not owned:
            await conn.close()
            return None
        return cls(engine, conn)

    async def close_gate(self) -> None:
        """Wait for consumer transactions inside to commit; hold new ones off."""
        if self.conn is not None:
            await self.conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": GATE_LOCK})
            await self.conn.commit()

    async def release(self) -> None:
        if self.conn is None:
            _closed.discard(database_key(self.engine))
            return
        try:
            # Closing the connection would end the session and its locks too; unlocking
            # first hands the pool a clean connection.
            await self.conn.execute(text("SELECT pg_advisory_unlock_all()"))
            await self.conn.commit()
        finally:
            await self.conn.close()


async def rebuild_alive(engine: AsyncEngine) -> bool:
    """Whether some process holds the owner lock (a rebuild is really running)."""
    if not is_postgres(engine):
        return database_key(engine) in _closed
    async with engine.connect() as conn:
        free = await conn.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": OWNER_LOCK})
        if free:
            await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": OWNER_LOCK})
        await conn.commit()
    return not free
