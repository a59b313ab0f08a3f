"""Periodic jobs that run exactly once per item however many replicas are up.

A job is a function that gets a session (one transaction) and returns how many
items it handled. Exactly-once is in the job's claim, not in a leader:

1. select the due rows with ``claim(stmt)``: ``FOR UPDATE SKIP LOCKED`` on
   PostgreSQL, so a second replica skips rows the first holds;
2. move each row out of its due state with a conditional UPDATE (``WHERE
   status = 'scheduled'``) and act only when it changed one row. SQLite does not
   lock what it reads, so this step is what makes it exactly once there;
3. write the effect and its outbox event in the same transaction.

A replica that dies mid-batch rolls back and its rows are due again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import Database

log = logging.getLogger(__name__)

S = TypeVar("S", bound=Select[Any])


@dataclass(frozen=True)
class ScheduledJob:
    name: str
    interval_s: float
    run: Callable[[AsyncSession], Awaitable[int]]
    # A tick that handled this many items runs again at once: there may be more due.
    batch_size: int = 500


def claim(stmt: S) -> S:
    """Lock the selected rows for this transaction; other replicas skip them."""
    return stmt.with_for_update(skip_locked=True)


async def run_once(db: Database, job: ScheduledJob) -> int:
    """One tick of ``job`` in its own transaction; returns how many items it handled."""
    async with db.session() as session:
        return await job.run(session)


async def run_forever(db: Database, job: ScheduledJob) -> None:
    while True:
        try:
            handled = await run_once(db, job)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("scheduled job %s failed; retrying in %.1fs", job.name, job.interval_s)
            handled = 0
        if handled < job.batch_size:
            await asyncio.sleep(job.interval_s)
