"""Property: after any sequence of ledger operations the audit balances and matches a model."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import update

from services.rewards.errors import InsufficientPoints
from services.rewards.models import Lot
from shared.db import utcnow
from tests.rewards.conftest import Rewards

MEMBERS = 3

operation = st.one_of(
    st.tuples(st.just("earn"), st.integers(0, MEMBERS - 1), st.integers(1, 50), st.booleans()),
    st.tuples(st.just("spend"), st.integers(0, MEMBERS - 1), st.integers(1, 60), st.none()),
    st.tuples(
        st.just("adjust"),
        st.integers(0, MEMBERS - 1),
        st.integers(-40, 40).filter(bool),
        st.none(),
    ),
    st.tuples(st.just("expire"), st.integers(0, MEMBERS - 1), st.none(), st.none()),
    st.tuples(st.just("release"), st.integers(0, MEMBERS - 1), st.none(), st.none()),
)


@dataclass
class Model:
    available: list[int] = field(default_factory=lambda: [0] * MEMBERS)
    pending: list[int] = field(default_factory=lambda: [0] * MEMBERS)


async def apply(rewards: Rewards, members: list[str], model: Model, op: tuple[Any, ...]) -> None:
    kind, index, amount, held = op
    member = members[index]
    ledger, schedule = rewards.service.ledger, rewards.service.schedule
    db = rewards.runtime.db
    if kind == "earn":
        async with db.session() as session:
            await ledger.earn(
                session,
                member_id=member,
                amount=amount,
                reason_code="test",
                reason="test",
                source=str(uuid.uuid4()),
                hold=timedelta(hours=1) if held else timedelta(0),
            )
        if held:
            model.pending[index] += amount
        else:
            model.available[index] += amount
    elif kind in ("spend", "adjust"):
        debit = amount if kind == "spend" else -amount
        try:
            async with db.session() as session:
                if kind == "spend":
                    await ledger.spend(
                        session,
                        member_id=member,
                        amount=amount,
                        reason_code="test",
                        reason="test",
                        source=str(uuid.uuid4()),
                    )
                else:
                    await ledger.adjust(
                        session,
                        member_id=member,
                        amount=amount,
                        reason="test",
                        operator_id="op",
                        source=str(uuid.uuid4()),
                    )
        except InsufficientPoints:
            assert model.available[index] < debit
        else:
            model.available[index] -= debit
    elif kind == "expire":
        async with db.session() as session:
            await session.execute(
                update(Lot)
                .where(Lot.member_id == member, Lot.status == "available")
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )
        async with db.session() as session:
            await schedule.expire_due(session, 100)
        model.available[index] = 0
    else:
        async with db.session() as session:
            await session.execute(
                update(Lot)
                .where(Lot.member_id == member, Lot.status == "pending")
                .values(available_at=utcnow() - timedelta(seconds=1))
            )
        async with db.session() as session:
            await schedule.release_due(session, 100)
        model.available[index] += model.pending[index]
        model.pending[index] = 0


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations=st.lists(operation, min_size=1, max_size=12))
async def test_the_ledger_audit_holds_after_any_sequence_of_operations(
    rewards: Rewards,
    operations: list[tuple[Any, ...]],
) -> None:
    members = [str(uuid.uuid4()) for _ in range(MEMBERS)]
    model = Model()
    for op in operations:
        await apply(rewards, members, model, op)
    audit = await rewards.audit()
    assert audit["balanced"], audit
    for index, member in enumerate(members):
        account = await rewards.account(member)
        assert (account["available"], account["pending"]) == (
            model.available[index],
            model.pending[index],
        )
