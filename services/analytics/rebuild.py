"""Rebuild the rollups from the raw event store, after a change to a metric's definition.

A rebuild closes the gate (gate.py: live consumers wait, on every replica), clears every
table derived only from events (``DERIVED``), then replays ``raw_events`` in event-time
order (the CloudEvent ``time``, ties by event id) in batches through the consumer's own
handlers, one transaction per batch, counting progress in the rebuild's row. Readers see
the rollups fill up meanwhile; ``as_of`` says up to which event time they are complete.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics.consumers import HANDLERS, apply_events
from services.analytics.gate import RebuildLock, rebuild_alive
from services.analytics.models import Rebuild
from services.analytics.raw import replayed
from services.analytics.repository import (
    RawEventRepository,
    RebuildRepository,
    RollupRepository,
)
from shared.db import Database, utcnow
from shared.errors import Conflict, NotFound

log = logging.getLogger(__name__)

RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"
INTERRUPTED = "interrupted: the process running it stopped"
ERROR_CHARS = 2000


class RebuildNotFound(NotFound):
    code, title = "rebuild-not-found", "No such rebuild"


class RebuildRunning(Conflict):
    code, title = "rebuild-running", "A rebuild is already running"


class RawStoreIncomplete(Conflict):
    code, title = "raw-store-incomplete", "The raw event store misses events the rollups hold"


class Rebuilds:
    """Starts rebuilds in this process and answers for every replica's (the rows)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(
        self, session: AsyncSession, requested_by: str, batch_size: int, *, force: bool
    ) -> Rebuild:
        """Create the rebuild in ``session``, commit it, and run it in the background."""
        lock = await RebuildLock.take(self.db.engine)
        if lock is None:
            raise RebuildRunning("Wait for it to finish: GET /v1/metrics/rebuilds")
        try:
            await lock.close_gate()
            repo = RebuildRepository(session)
            # Holding the owner lock, any row still running was left by a dead process.
            await repo.fail_running(INTERRUPTED)
            raw = RawEventRepository(session)
            total, applied = await raw.count(), await raw.events_applied()
            if applied > total and not force:
                raise RawStoreIncomplete(
                    f"The rollups hold {applied} events but the raw store {total} (events "
                    "applied before it existed); a rebuild would drop the rest. Send "
                    '{"force": true} to rebuild from the stored events only.'
                )
            rebuild = await repo.create(
                Rebuild(
                    id=str(uuid.uuid4()),
                    state=RUNNING,
                    requested_by=requested_by[:64],
                    batch_size=batch_size,
                    events_total=total,
                    events_done=0,
                    started_at=utcnow(),
                )
            )
            # A job, not a request's unit of work: the run's own transactions (and SQLite's
            # single writer) need the row committed and the request's write lock released.
            await session.commit()
        except BaseException:
            await lock.release()
            raise
        task = asyncio.create_task(self._run(rebuild.id, batch_size, lock), name="rebuild")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return rebuild

    async def _run(self, rebuild_id: str, batch_size: int, lock: RebuildLock) -> None:
        try:
            async with self.db.session() as session:
                await RollupRepository(session).clear_derived()
            done, after = 0, None
            while True:
                async with self.db.session() as session:
                    # Written first, so the batch holds SQLite's write lock before it reads.
                    await RebuildRepository(session).progress(rebuild_id, done)
                    events = await RawEventRepository(session).page(after, batch_size)
                    if not events:
                        break
                    await apply_events(
                        session,
                        [
                            replayed(
                                row.event_id, row.type, row.source, row.subject, row.time, row.data
                            )
                            for row in events
                            if row.type in HANDLERS  # a type no longer subscribed to: skipped
                        ],
                    )
                    done += len(events)
                    await RebuildRepository(session).progress(rebuild_id, done)
                after = (events[-1].time, events[-1].event_id)
            await self._finish(rebuild_id, SUCCEEDED)
            log.info("rebuild %s: replayed %d events", rebuild_id, done)
        except asyncio.CancelledError:
            await self._finish(rebuild_id, FAILED, "interrupted: the service stopped")
            raise
        except Exception as exc:
            log.exception("rebuild %s failed", rebuild_id)
            await self._finish(rebuild_id, FAILED, f"{type(exc).__name__}: {exc}"[:ERROR_CHARS])
        finally:
            await lock.release()

    async def _finish(self, rebuild_id: str, state: str, error: str | None = None) -> None:
        try:
            async with self.db.session() as session:
                await RebuildRepository(session).finish(rebuild_id, state, error)
        except Exception:  # the next start or read marks it failed instead
            log.exception("rebuild %s: could not record %s", rebuild_id, state)

    async def get(self, session: AsyncSession, rebuild_id: str) -> Rebuild:
        rebuild = await RebuildRepository(session).get(rebuild_id)
        if rebuild is None:
            raise RebuildNotFound(f"No rebuild {rebuild_id!r}")
        await self._settle(session, [rebuild])
        return rebuild

    async def page(
        self, session: AsyncSession, after: tuple[datetime, str] | None, limit: int
    ) -> list[Rebuild]:
        rebuilds = await RebuildRepository(session).page(after, limit)
        await self._settle(session, rebuilds)
        return rebuilds

    async def _settle(self, session: AsyncSession, rebuilds: list[Rebuild]) -> None:
        """A row still running while no process holds the owner lock was interrupted."""
        running = [r for r in rebuilds if r.state == RUNNING]
        if running and not await rebuild_alive(self.db.engine):
            for rebuild in running:
                await RebuildRepository(session).finish(rebuild.id, FAILED, INTERRUPTED)
                await session.refresh(rebuild)

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=10)
