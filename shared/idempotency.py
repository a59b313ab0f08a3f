"""``Idempotency-Key`` for POST routes, with Stripe's semantics.

Same key and same body replays the first response; same key with another body
is 422. The key is claimed by the request's own transaction, as its first
statement, and the response is stored in that transaction before it commits: a
crash can never leave an effect without its record (or the other way round),
and a failed request leaves no claim behind. A second request with the key
while the first is still running waits on the claim's row lock, then replays
the first response (or proceeds, if the first failed). A route that commits
part of its work before answering (a saga's first step) commits the claim
unfinished: a duplicate then gets 409 until the first completes, and a
failure releases the claim. Keys are kept for ``idempotency_ttl_h`` hours
(24 by default).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from shared.db import Database, conflict_insert, idempotency_table, utcnow
from shared.errors import Conflict, DomainError, Unprocessable

HEADER = "idempotency-key"
REPLAY_HEADER = "idempotent-replayed"
MAX_KEY_LENGTH = 255
# An unfinished claim older than this (its process died after committing part of the
# request) may be taken over.
STALE_CLAIM = timedelta(minutes=2)
KEPT_HEADERS = ("content-type", "location")


class InvalidIdempotencyKey(DomainError):
    status, code, title = 400, "invalid-idempotency-key", "Invalid Idempotency-Key"


@dataclass(frozen=True)
class Claim:
    scope: str


def request_hash(method: str, path: str, query: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), query.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def check_key(key: str) -> None:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidIdempotencyKey(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters"
        )


async def begin(
    session: AsyncSession, *, key: str, owner: str, fingerprint: str, ttl: timedelta
) -> Claim | Response:
    """Claim ``key`` in the request's transaction, or answer with the stored response."""
    check_key(key)
    scope = f"{owner}:{key}"
    now = utcnow()
    claimed = await session.execute(
        conflict_insert(session, idempotency_table)
        .values(scope=scope, request_hash=fingerprint, created_at=now)
        .on_conflict_do_nothing(index_elements=["scope"])
    )
    if getattr(claimed, "rowcount", 0) == 1:
        return Claim(scope)
    row = (
        await session.execute(select(idempotency_table).where(idempotency_table.c.scope == scope))
    ).one()
    answer = stored_answer(row, fingerprint=fingerprint, now=now, ttl=ttl)
    if answer is not None:
        return answer
    await session.execute(
        update(idempotency_table)
        .where(idempotency_table.c.scope == scope)
        .values(
            request_hash=fingerprint,
            created_at=now,
            completed_at=None,
            status_code=None,
            response_body=None,
            response_headers=None,
        )
    )
    return Claim(scope)


def stored_answer(row: Any, *, fingerprint: str, now: datetime, ttl: timedelta) -> Response | None:
    """What a request whose key is already recorded (``row``) gets: the stored response, or
    422/409 raised; ``None`` when the record has expired or is a stale claim to take over."""
    expired = row.created_at < now - ttl
    stale = row.completed_at is None and row.created_at < now - STALE_CLAIM
    if expired or stale:
        return None
    if row.request_hash != fingerprint:
        raise Unprocessable(
            "This Idempotency-Key was already used with a different request; use a new key"
        )
    if row.completed_at is None:
        raise Conflict("A request with this Idempotency-Key is still being processed; retry later")
    headers = dict(row.response_headers or {})
    headers[REPLAY_HEADER] = "true"
    return Response(content=row.response_body, status_code=row.status_code, headers=headers)


async def complete(session: AsyncSession, claim: Claim, response: Response) -> None:
    """Store the response in the request's own transaction."""
    headers = {k: v for k, v in response.headers.items() if k.lower() in KEPT_HEADERS}
    await session.execute(
        update(idempotency_table)
        .where(idempotency_table.c.scope == claim.scope)
        .values(
            status_code=response.status_code,
            response_body=bytes(response.body),
            response_headers=headers,
            completed_at=utcnow(),
        )
    )


async def release(session: AsyncSession, claim: Claim) -> None:
    """Forget the claim of a failed request that had committed part of its work, so the
    client may retry with the same key."""
    await session.rollback()
    await session.execute(
        delete(idempotency_table).where(
            idempotency_table.c.scope == claim.scope,
            idempotency_table.c.completed_at.is_(None),
        )
    )
    await session.commit()


async def purge_expired(db: Database, ttl: timedelta) -> int:
    async with db.session() as session:
        result = await session.execute(
            delete(idempotency_table).where(idempotency_table.c.created_at < utcnow() - ttl)
        )
    return int(getattr(result, "rowcount", 0) or 0)
