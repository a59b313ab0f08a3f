"""Earning rules: which consumed events pay how many points, to whom, within which caps.

A rule names an event type; an event carrying a ``community_id`` uses the rules
for that community when there are any (the override) and the global rules
(no community) otherwise. Of the rules that apply, the newest pays: an event
pays at most once, because its id is the entry's unique ``source``.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from time import monotonic
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards.errors import RuleNotFound, UnknownRuleEventType
from services.rewards.ledger import Credit, Ledger, Posting
from services.rewards.models import EarningRule, LedgerEntry
from services.rewards.schemas import EarningRuleCreate
from services.rewards.tiers import TierService
from shared.db import utcnow
from shared.events.registry import REGISTRY


@dataclass(frozen=True)
class Earning:
    """Who an event pays, when it happened, and where."""

    member_id: str | None
    occurred_at: datetime
    community_id: str | None


def _get(data: Any, name: str) -> Any:
    return getattr(data, name, None)


def _earning(member_field: str, time_field: str) -> Callable[[Any], Earning]:
    def extract(data: Any) -> Earning:
        return Earning(_get(data, member_field), _get(data, time_field), _get(data, "community_id"))

    return extract


def _like_received(data: Any) -> Earning:
    # Pays the post's author, never for liking one's own post.
    payee = None if data.member_id == data.post_author_id else data.post_author_id
    return Earning(payee, data.reacted_at, data.community_id)


def _post_published(data: Any) -> Earning:
    payee = data.author_id if data.author_kind == "member" else None
    return Earning(payee, data.published_at, data.community_id)


def _quiz_answered(data: Any) -> Earning:
    payee = data.member_id if data.all_correct else None
    return Earning(payee, data.answered_at, data.community_id)


EARNABLE: dict[str, Callable[[Any], Earning]] = {
    "post.published": _post_published,
    "comment.created": _earning("author_id", "created_at"),
    "reaction.added": _like_received,
    "post.shared": _earning("member_id", "shared_at"),
    "quiz.answered": _quiz_answered,
    "survey.answered": _earning("member_id", "answered_at"),
    "poll.voted": _earning("member_id", "voted_at"),
    "campaign.checked_in": _earning("member_id", "checked_in_at"),
    "member.referral_activated": _earning("referrer_id", "activated_at"),
    "member.registered": _earning("member_id", "registered_at"),
}
REASONS = {
    "post.published": "Published a post",
    "comment.created": "Commented",
    "reaction.added": "Received a like",
    "post.shared": "Shared a post",
    "quiz.answered": "Answered a quiz correctly",
    "survey.answered": "Answered a survey",
    "poll.voted": "Voted in a poll",
    "campaign.checked_in": "Checked in",
    "member.referral_activated": "Referred a member who became active",
    "member.registered": "Welcome points",
}


@dataclass(frozen=True)
class RuleSnapshot:
    """What applying a rule needs, detached from any session so replicas can cache it."""

    id: str
    name: str
    points: int
    daily_cap: int | None
    weekly_cap: int | None
    community_id: str | None
    starts_at: datetime | None
    ends_at: datetime | None
    tier_multipliers: dict[str, float]
    hold_h: float | None

    @property
    def reads_account(self) -> bool:
        """Caps and tier multipliers decide the amount from the account and past entries."""
        return (
            bool(self.tier_multipliers) or self.daily_cap is not None or self.weekly_cap is not None
        )

    @classmethod
    def of(cls, rule: EarningRule) -> RuleSnapshot:
        return cls(
            id=rule.id,
            name=rule.name,
            points=rule.points,
            daily_cap=rule.daily_cap,
            weekly_cap=rule.weekly_cap,
            community_id=rule.community_id,
            starts_at=rule.starts_at,
            ends_at=rule.ends_at,
            tier_multipliers=dict(rule.tier_multipliers),
            hold_h=rule.hold_h,
        )


def day_start(moment: datetime) -> datetime:
    return datetime.combine(moment.astimezone(UTC).date(), time(), tzinfo=UTC)


class EarningService:
    def __init__(self, ledger: Ledger, tiers: TierService) -> None:
        self.ledger = ledger
        self.tiers = tiers
        self.cache_s = ledger.settings.config_cache_s
        self._cache: dict[str, tuple[float, list[RuleSnapshot]]] = {}

    async def create_rule(self, session: AsyncSession, data: EarningRuleCreate) -> EarningRule:
        if data.event_type not in REGISTRY or data.event_type not in EARNABLE:
            raise UnknownRuleEventType(data.event_type, sorted(EARNABLE))
        rule = EarningRule(
            id=str(uuid.uuid4()),
            name=data.name,
            event_type=data.event_type,
            points=data.points,
            daily_cap=data.daily_cap,
            weekly_cap=data.weekly_cap,
            community_id=data.community_id,
            starts_at=data.starts_at,
            ends_at=data.ends_at,
            tier_multipliers=dict(data.tier_multipliers),
            hold_h=data.hold_h,
            active=True,
            created_at=utcnow(),
        )
        session.add(rule)
        await session.flush()
        self._cache.clear()
        return rule

    async def list_rules(self, session: AsyncSession) -> list[EarningRule]:
        stmt = select(EarningRule).order_by(EarningRule.event_type, EarningRule.created_at)
        return list((await session.scalars(stmt)).all())

    async def get_rule(self, session: AsyncSession, rule_id: str) -> EarningRule:
        rule = await session.get(EarningRule, rule_id)
        if rule is None:
            raise RuleNotFound(f"No earning rule with id {rule_id}")
        return rule

    async def deactivate(self, session: AsyncSession, rule_id: str) -> EarningRule:
        rule = await self.get_rule(session, rule_id)
        rule.active = False
        await session.flush()
        self._cache.clear()
        return rule

    async def rule_for(
        self, session: AsyncSession, event_type: str, earning: Earning
    ) -> RuleSnapshot | None:
        at = earning.occurred_at
        applicable = [
            rule
            for rule in await self._active_rules(session, event_type)
            if (rule.starts_at is None or rule.starts_at <= at)
            and (rule.ends_at is None or rule.ends_at > at)
            and rule.community_id in (None, earning.community_id)
        ]
        specific = [r for r in applicable if r.community_id is not None]
        chosen = specific or applicable
        return chosen[0] if chosen else None

    async def _active_rules(self, session: AsyncSession, event_type: str) -> list[RuleSnapshot]:
        """Active rules of one event type, newest first; cached for ``config_cache_s``."""
        now = monotonic()
        cached = self._cache.get(event_type)
        if cached is not None and now - cached[0] < self.cache_s:
            return cached[1]
        rows = (
            await session.scalars(
                select(EarningRule)
                .where(EarningRule.event_type == event_type, EarningRule.active.is_(True))
                .order_by(EarningRule.created_at.desc(), EarningRule.id)
            )
        ).all()
        rules = [RuleSnapshot.of(row) for row in rows]
        self._cache[event_type] = (now, rules)
        return rules

    async def apply(
        self, session: AsyncSession, event_type: str, data: Any, source: str
    ) -> Posting | None:
        """Pay what ``event_type`` earns under the applicable rule; once per ``source``."""
        [posting] = await self.apply_many(session, [(event_type, data, source)])
        return posting

    async def apply_many(
        self, session: AsyncSession, events: Sequence[tuple[str, Any, str]]
    ) -> list[Posting | None]:
        """Pay a run of ``(event type, data, source)`` in order, one posting per source.

        Plain rules (no caps, no tier multiplier) need nothing read first, so a stretch
        of them is paid with one statement per table. A rule with caps or multipliers
        reads the account and past entries under the account lock, so it is paid on
        its own after everything before it.
        """
        postings: list[Posting | None] = [None] * len(events)
        plain: list[tuple[int, Credit]] = []
        for index, (event_type, data, source) in enumerate(events):
            match = await self._match(session, event_type, data)
            if match is None:
                continue
            earning, rule = match
            if not rule.reads_account:
                plain.append((index, self._credit(event_type, earning, rule, rule.points, source)))
                continue
            await self._pay(session, plain, postings, locked=False)
            plain = []
            points = await self._points_under_lock(session, rule, earning)
            if points > 0:
                credit = self._credit(event_type, earning, rule, points, source)
                await self._pay(session, [(index, credit)], postings, locked=True)
        await self._pay(session, plain, postings, locked=False)
        return postings

    async def _match(
        self, session: AsyncSession, event_type: str, data: Any
    ) -> tuple[Earning, RuleSnapshot] | None:
        extract = EARNABLE.get(event_type)
        if extract is None:
            return None
        earning = extract(data)
        if earning.member_id is None:
            return None
        rule = await self.rule_for(session, event_type, earning)
        return None if rule is None else (earning, rule)

    @staticmethod
    def _credit(
        event_type: str, earning: Earning, rule: RuleSnapshot, points: int, source: str
    ) -> Credit:
        assert earning.member_id is not None
        return Credit(
            member_id=earning.member_id,
            amount=points,
            reason_code=event_type,
            reason=f"{REASONS[event_type]} (rule {rule.name})",
            source=source,
            rule_id=rule.id,
            occurred_at=earning.occurred_at,
            hold=timedelta(hours=rule.hold_h) if rule.hold_h is not None else None,
        )

    async def _points_under_lock(
        self, session: AsyncSession, rule: RuleSnapshot, earning: Earning
    ) -> int:
        assert earning.member_id is not None
        balance = await self.ledger.lock_account(session, earning.member_id)
        multiplier = float(rule.tier_multipliers.get(balance.tier_code or "", 1.0))
        return await self._within_caps(session, rule, earning, math.floor(rule.points * multiplier))

    async def _pay(
        self,
        session: AsyncSession,
        credits: list[tuple[int, Credit]],
        postings: list[Posting | None],
        *,
        locked: bool,
    ) -> None:
        """Post the credits, then upgrade each paid member's tier on their final balance."""
        if not credits:
            return
        paid = await self.ledger.earn_many(session, [c for _, c in credits], locked=locked)
        final: dict[str, Posting] = {}
        for (index, credit), posting in zip(credits, paid, strict=True):
            postings[index] = posting
            if posting is not None:
                final[credit.member_id] = posting
        for member_id, posting in final.items():
            await self.tiers.after_earning(session, member_id, posting.balance)

    async def _within_caps(
        self, session: AsyncSession, rule: RuleSnapshot, earning: Earning, points: int
    ) -> int:
        assert earning.member_id is not None
        day = day_start(earning.occurred_at)
        windows = []
        if rule.daily_cap is not None:
            windows.append((rule.daily_cap, day, day + timedelta(days=1)))
        if rule.weekly_cap is not None:
            week = day - timedelta(days=day.weekday())
            windows.append((rule.weekly_cap, week, week + timedelta(days=7)))
        for cap, start, end in windows:
            used = await session.scalar(
                select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
                    LedgerEntry.member_id == earning.member_id,
                    LedgerEntry.rule_id == rule.id,
                    LedgerEntry.occurred_at >= start,
                    LedgerEntry.occurred_at < end,
                )
            )
            points = min(points, cap - int(used or 0))
        return points
