"""Redemptions through the API, committed in groups: one transaction for all that wait.

``RedemptionDesk.redeem`` hands a request to the process's ``GroupCommit``. One
batch is one transaction, in the lock order of every posting (idempotency keys,
then accounts, then catalogue items):

1. claim every request's ``Idempotency-Key`` with one multi-row insert, in scope
   order (a key in flight elsewhere is waited for, as on the single path);
2. read the items, lock the accounts (``SpendBook``) and the stock of limited items;
3. decide each redemption in Python against the running balances, lots and stock;
   a refused one (404, 409 with the balance, out of stock) touches nothing;
4. write entries, lines, lots, balances, stock, redemptions, outbox events and the
   stored responses with one statement per table, drop the refused requests'
   claims, and commit.

Each request gets its own outcome; a key used before is answered from its stored
response (the replay, or 422 for another body), and a second request with a key
already in the batch waits for the next batch, where it is. What a batch does not
handle (a coupon item, an expired key) goes to the single path, which is the
``TransactionalRoute`` sequence of old; a batch whose transaction fails sends
every request down the single path, where each succeeds or fails on its own.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from services.rewards import events
from services.rewards.batch_writes import BatchWrites
from services.rewards.catalog import CatalogService
from services.rewards.errors import ItemNotFound, ItemOutOfStock
from services.rewards.group_commit import AGAIN, Again, GroupCommit
from services.rewards.ledger.batch import SpendBook
from services.rewards.models import CatalogItem
from services.rewards.schemas import ItemKind, RedemptionRead
from services.rewards.settings import RewardsSettings
from shared import idempotency
from shared.db import (
    Database,
    conflict_insert,
    dialect_of,
    idempotency_table,
    in_bound_list,
    utcnow,
)
from shared.errors import DomainError
from shared.events.contracts.rewards import PointsSpent, RewardRedeemed
from shared.events.registry import EventData
from shared.outbox import outbox_rows

log = logging.getLogger(__name__)

PREFIX = "/v1/redemptions"
ITEMS = cast(Table, CatalogItem.__table__)
KEYS = idempotency_table


@dataclass(frozen=True)
class RedemptionRequest:
    """One ``POST /v1/redemptions``, parsed and authorised, with its idempotency key."""

    owner: str  # who sent the key: the key's scope is theirs
    key: str
    fingerprint: str
    member_id: str
    item_id: str
    quantity: int
    shipping_address: str | None = None
    note: str | None = None
    traceparent: str | None = None

    @property
    def scope(self) -> str:
        return f"{self.owner}:{self.key}"

    @property
    def source(self) -> str:
        return f"{self.member_id}:{self.key}"


class Alone:
    def __repr__(self) -> str:
        return "ALONE"


ALONE = Alone()
"""The batch leaves this request to the single path."""

Outcome = Response | Exception | Alone


READ_ITEMS = select(
    ITEMS.c.id,
    ITEMS.c.name,
    ITEMS.c.kind,
    ITEMS.c.points_price,
    ITEMS.c.stock,
    ITEMS.c.coupon_template_id,
    ITEMS.c.active,
).where(ITEMS.c.id.in_(bindparam("b_items", expanding=True)))
# PostgreSQL: the claims and the item read in one round trip. Rows are inserted in the
# order of the (sorted) scopes; the items come from the statement's snapshot, unlocked.
CLAIM_AND_READ_ITEMS = text(
    """
WITH claimed AS (
    INSERT INTO idempotency_keys (scope, request_hash, created_at)
    SELECT scope, request_hash, CAST(:now AS timestamptz)
    FROM unnest(CAST(:scopes AS varchar[]), CAST(:hashes AS varchar[])) AS k(scope, request_hash)
    ON CONFLICT (scope) DO NOTHING
    RETURNING scope
)
SELECT true AS claimed, scope AS id, NULL AS name, NULL AS kind, NULL AS points_price,
       NULL AS stock, NULL AS coupon_template_id, NULL AS active
FROM claimed
UNION ALL
SELECT false, id, name, kind, points_price, stock, coupon_template_id, active
FROM catalog_items WHERE id = ANY(CAST(:items AS varchar[]))
"""
)


@cache
def lock_stock(dialect: str) -> Any:
    """Taken after the accounts: the lock order of every redemption is account, item, template."""
    return (
        select(ITEMS.c.id, ITEMS.c.stock, ITEMS.c.active)
        .where(in_bound_list(ITEMS.c.id, "b_items", dialect))
        .order_by(ITEMS.c.id)
        .with_for_update()
    )


READ_CLAIMS = select(KEYS).where(KEYS.c.scope.in_(bindparam("b_scopes", expanding=True)))


def created(read: RedemptionRead) -> Response:
    """The 201 both paths answer (and store for replays)."""
    return Response(
        content=read.model_dump_json().encode(),
        status_code=201,
        media_type="application/json",
        headers={"location": f"{PREFIX}/{read.id}"},
    )


class RedemptionDesk:
    def __init__(self, catalog: CatalogService, db: Database, settings: RewardsSettings) -> None:
        self.catalog = catalog
        self.db = db
        self.ttl = timedelta(hours=settings.idempotency_ttl_h)
        self.batches: GroupCommit[RedemptionRequest, Outcome] = GroupCommit(
            self.redeem_together,
            max_batch=settings.redemption_batch_max,
            # SQLite has one writer: a second batch would only wait for the first.
            in_flight=1 if db.is_sqlite else settings.redemption_batches_in_flight,
        )

    async def redeem(self, request: RedemptionRequest) -> Response:
        """The request's own answer: its 201 (or the replay of its key), or its error raised."""
        outcome = await self.batches.submit(request)
        if isinstance(outcome, Alone):
            return await self.redeem_alone(request)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def redeem_alone(self, request: RedemptionRequest) -> Response:
        """One redemption in its own transaction, its key claimed first (``TransactionalRoute``)."""
        async with self.db.sessionmaker() as session:
            try:
                claim = await idempotency.begin(
                    session,
                    key=request.key,
                    owner=request.owner,
                    fingerprint=request.fingerprint,
                    ttl=self.ttl,
                )
                if isinstance(claim, Response):
                    await session.rollback()
                    return claim
                redemption = await self.catalog.redeem(
                    session,
                    member_id=request.member_id,
                    item_id=request.item_id,
                    quantity=request.quantity,
                    source=request.source,
                    shipping_address=request.shipping_address,
                    note=request.note,
                )
                response = created(RedemptionRead.model_validate(redemption))
                await idempotency.complete(session, claim, response)
                await self.db.commit(session)
            except BaseException:
                await session.rollback()
                raise
        return response

    async def redeem_together(self, requests: Sequence[RedemptionRequest]) -> list[Outcome | Again]:
        """One transaction for ``requests``; an outcome for each, in order."""
        outcomes: list[Outcome | Again] = []
        batch: list[RedemptionRequest] = []
        scopes: set[str] = set()
        sources: set[str] = set()
        for request in requests:  # a second request for one key waits for the first's answer
            if request.scope in scopes or request.source in sources:
                outcomes.append(AGAIN)
                continue
            scopes.add(request.scope)
            sources.add(request.source)
            batch.append(request)
            outcomes.append(ALONE)
        try:
            async with self.db.sessionmaker() as session:
                decided = await self._redeem(session, batch)
                await self.db.commit(session)
        except Exception as exc:
            log.warning("%d redemptions failed together; each goes alone", len(batch), exc_info=exc)
            return outcomes
        return [
            decided.get(id(request), ALONE) if outcome is ALONE else outcome
            for request, outcome in zip(requests, outcomes, strict=True)
        ]

    async def _redeem(
        self, session: AsyncSession, batch: list[RedemptionRequest]
    ) -> dict[int, Outcome]:
        now = utcnow()
        claimed, items = await self._claim(session, batch, now)
        outcomes: dict[int, Outcome] = {}
        fresh = [r for r in batch if r.scope in claimed]
        used = [r for r in batch if r.scope not in claimed]
        if used:  # a retry, mostly: answer it from the stored response, as the single path would
            params = {"b_scopes": sorted(r.scope for r in used)}
            stored = {row.scope: row for row in await session.execute(READ_CLAIMS, params)}
            for r in used:
                outcomes[id(r)] = self._answer_used_key(r, stored.get(r.scope), now)
        if not fresh:
            return outcomes
        todo: list[RedemptionRequest] = []
        needs: dict[str, int] = {}
        for r in fresh:
            item = items.get(r.item_id)
            if item is None or not item.active:
                outcomes[id(r)] = ItemNotFound(f"No catalogue item with id {r.item_id} is offered")
            elif item.kind == ItemKind.COUPON.value and item.coupon_template_id is not None:
                outcomes[id(r)] = ALONE  # issuing a coupon locks its template: the single path
            else:
                todo.append(r)
                needs[r.member_id] = needs.get(r.member_id, 0) + item.points_price * r.quantity
        book = await SpendBook.open(session, needs, now)
        stocked = sorted({r.item_id for r in todo if items[r.item_id].stock is not None})
        stock: dict[str, int] = {}
        if stocked:
            locked = await session.execute(lock_stock(dialect_of(session)), {"b_items": stocked})
            for item_id, left, active in locked:
                stock[item_id] = left if active else 0
        writes = BatchWrites(now)
        published: list[tuple[EventData, str, str | None]] = []
        for r in todo:
            try:
                row, spent, response = self._decide(r, items[r.item_id], book, stock, now)
            except (DomainError, RuntimeError) as exc:
                outcomes[id(r)] = exc
                continue
            if r.item_id in stock:
                writes.stock[r.item_id] = writes.stock.get(r.item_id, 0) + r.quantity
            writes.redemptions.append(row)
            published.append((spent, r.member_id, r.traceparent))
            published.append((self._redeemed(row, now), r.member_id, r.traceparent))
            headers = {"content-type": "application/json", "location": f"{PREFIX}/{row['id']}"}
            writes.completed.append(
                {
                    "scope": r.scope,
                    "status": response.status_code,
                    "body": bytes(response.body),
                    "headers": headers,
                }
            )
            outcomes[id(r)] = response
        writes.entries, writes.lines, writes.lots = book.entries, book.lines, book.taken
        writes.accounts = book.spent()
        _, writes.outbox = outbox_rows(published, events.SOURCE)
        # As a rollback would on the single path: a refused request may retry its key.
        writes.dropped = sorted(r.scope for r in fresh if not isinstance(outcomes[id(r)], Response))
        await writes.write(session)
        return outcomes

    async def _claim(
        self, session: AsyncSession, batch: list[RedemptionRequest], now: datetime
    ) -> tuple[set[str], dict[str, Any]]:
        """Claim the batch's keys (in scope order, the lock order of keys) and read its items:
        the scopes this batch now holds, and the items by id (read, not locked)."""
        scopes = sorted(r.scope for r in batch)
        hashes = {r.scope: r.fingerprint for r in batch}
        item_ids = sorted({r.item_id for r in batch})
        if dialect_of(session) == "postgresql":  # one round trip for both
            params = {
                "scopes": scopes,
                "hashes": [hashes[scope] for scope in scopes],
                "now": now,
                "items": item_ids,
            }
            claimed: set[str] = set()
            items: dict[str, Any] = {}
            for row in await session.execute(CLAIM_AND_READ_ITEMS, params):
                if row.claimed:
                    claimed.add(row.id)
                else:
                    items[row.id] = row
            return claimed, items
        claims = [{"scope": s, "request_hash": hashes[s], "created_at": now} for s in scopes]
        claim = (
            conflict_insert(session, KEYS)
            .on_conflict_do_nothing(index_elements=["scope"])
            .returning(KEYS.c.scope)
        )
        claimed = set((await session.execute(claim, claims)).scalars())
        rows = await session.execute(READ_ITEMS, {"b_items": item_ids})
        return claimed, {row.id: row for row in rows}

    def _answer_used_key(self, r: RedemptionRequest, row: Any, now: datetime) -> Outcome:
        if row is None:  # released since: start afresh
            return ALONE
        try:
            answer = idempotency.stored_answer(
                row, fingerprint=r.fingerprint, now=now, ttl=self.ttl
            )
        except DomainError as exc:
            return exc
        # None: an expired record or a stale claim, which the single path takes over.
        return ALONE if answer is None else answer

    def _decide(
        self,
        r: RedemptionRequest,
        item: Any,
        book: SpendBook,
        stock: dict[str, int],
        now: datetime,
    ) -> tuple[dict[str, Any], PointsSpent, Response]:
        left = stock.get(r.item_id)
        if left is not None and left < r.quantity:
            raise ItemOutOfStock(f"Only {left} left of {item.name}", stock=left)
        points = item.points_price * r.quantity
        source = f"redemption:{r.source}"
        posting = book.debit(
            r.member_id,
            points,
            reason_code="redemption",
            reason=f"Redeemed {r.quantity} x {item.name}",
            source=source,
        )
        if left is not None:
            stock[r.item_id] = left - r.quantity
        row = {
            "id": str(uuid.uuid4()),
            "member_id": r.member_id,
            "item_id": r.item_id,
            "item_kind": item.kind,
            "quantity": r.quantity,
            "points": points,
            "entry_id": posting.entry_id,
            "coupon_code": None,
            "source": r.source,
            "shipping_address": r.shipping_address,
            "note": r.note,
            "created_at": now,
        }
        spent = PointsSpent(
            member_id=r.member_id,
            entry_id=posting.entry_id,
            amount=points,
            reason_code="redemption",
            source=source,
            balance=posting.balance.available,
            spent_at=now,
        )
        return row, spent, created(RedemptionRead.model_validate(row))

    @staticmethod
    def _redeemed(row: dict[str, Any], now: datetime) -> RewardRedeemed:
        return RewardRedeemed(
            redemption_id=row["id"],
            member_id=row["member_id"],
            item_id=row["item_id"],
            item_kind=row["item_kind"],
            points=row["points"],
            quantity=row["quantity"],
            redeemed_at=now,
        )
