"""Segment rules: a small JSON language operators write, compiled to one SQL condition.

A rule is a leaf (``{"field": "gender", "values": ["female"]}``) or a group
(``{"all": [...]}``, ``{"any": [...]}``) nesting up to ``MAX_DEPTH``. The
compiled condition runs in the database against indexed columns, so counting
a segment never loads members into Python. Interests and communities are
``id IN (subquery)`` rather than correlated ``EXISTS``: PostgreSQL hashes the
subquery once even under an OR, where an EXISTS would run once per member.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    Tag,
    model_validator,
)
from sqlalchemy import ColumnElement, and_, false, or_, select, true

from services.members.models import Member, MemberInterest, Membership
from services.members.taxonomy import (
    INTERESTS,
    AgeBand,
    Channel,
    Gender,
    birth_years_of,
    is_country,
    is_subdivision_of,
)
from shared.web import JsonInt, json_integer

MAX_DEPTH = 5
MAX_POINTS = 2**53 - 1  # what a JSON number holds exactly, and far inside a BIGINT
Points = Annotated[int, Field(ge=0, le=MAX_POINTS), BeforeValidator(json_integer)]
IN_FIELDS = ("gender", "age_band", "country", "province", "city", "channel", "tier", "community")


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InRule(_Rule):
    """The member's value of ``field`` is one of ``values``."""

    field: Literal[
        "gender", "age_band", "country", "province", "city", "channel", "tier", "community"
    ]
    values: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=200
    )

    @model_validator(mode="after")
    def _known_values(self) -> InRule:
        checks: dict[str, Callable[[str], bool]] = {
            "gender": lambda v: v in Gender.__members__.values(),
            "age_band": lambda v: v in AgeBand.__members__.values(),
            "channel": lambda v: v in Channel.__members__.values(),
            "country": is_country,
            "province": lambda v: is_subdivision_of(v, v.split("-", 1)[0]),
        }
        check = checks.get(self.field)
        if check is not None:
            unknown = [v for v in self.values if not check(v)]
            if unknown:
                raise ValueError(f"unknown {self.field} values: {', '.join(unknown)}")
        return self


class InterestsRule(_Rule):
    """The member has ``any`` (or ``all``) of the interests."""

    field: Literal["interests"]
    match: Literal["any", "all"] = "any"
    values: list[str] = Field(min_length=1, max_length=50)

    @model_validator(mode="after")
    def _known_interests(self) -> InterestsRule:
        unknown = sorted(set(self.values) - INTERESTS)
        if unknown:
            raise ValueError(f"unknown interests: {', '.join(unknown)}")
        return self


class WithinRule(_Rule):
    """Joined, or last active, within the last ``days`` days."""

    field: Literal["joined_within_days", "active_within_days"]
    days: JsonInt = Field(ge=1, le=3650)


class PointsRule(_Rule):
    """Points balance in ``[min, max]``; either bound may be left open."""

    field: Literal["points"]
    min: Points | None = None
    max: Points | None = None

    @model_validator(mode="after")
    def _a_real_range(self) -> PointsRule:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is greater than max")
        return self


class ConsentRule(_Rule):
    field: Literal["marketing_consent"]
    value: StrictBool  # 0 is not an answer to a consent question


class AllOf(_Rule):
    all: list[Rule] = Field(min_length=1, max_length=50)


class AnyOf(_Rule):
    any: list[Rule] = Field(min_length=1, max_length=50)


def _kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if not isinstance(value, dict):
        return None
    if "all" in value:
        return "all"
    if "any" in value:
        return "any"
    field = value.get("field")
    if field in IN_FIELDS:
        return "in"
    return (
        {
            "interests": "interests",
            "joined_within_days": "within",
            "active_within_days": "within",
            "points": "points",
            "marketing_consent": "consent",
        }.get(field)
        if isinstance(field, str)
        else None
    )


Rule = Annotated[
    Annotated[InRule, Tag("in")]
    | Annotated[InterestsRule, Tag("interests")]
    | Annotated[WithinRule, Tag("within")]
    | Annotated[PointsRule, Tag("points")]
    | Annotated[ConsentRule, Tag("consent")]
    | Annotated[AllOf, Tag("all")]
    | Annotated[AnyOf, Tag("any")],
    Discriminator(
        _kind,
        custom_error_type="invalid_rule",
        custom_error_message="a rule is {field: <known field>, ...}, {all: [...]} or {any: [...]}",
    ),
]
AllOf.model_rebuild()
AnyOf.model_rebuild()


def depth(rule: Rule) -> int:
    if isinstance(rule, AllOf):
        return 1 + max(depth(r) for r in rule.all)
    if isinstance(rule, AnyOf):
        return 1 + max(depth(r) for r in rule.any)
    return 1


def community_ids(rule: Rule) -> set[str]:
    """Every community a rule names, so the service can refuse unknown ones."""
    if isinstance(rule, AllOf | AnyOf):
        children = rule.all if isinstance(rule, AllOf) else rule.any
        return set().union(*(community_ids(r) for r in children))
    if isinstance(rule, InRule) and rule.field == "community":
        return set(rule.values)
    return set()


def condition(rule: Rule, now: datetime) -> ColumnElement[bool]:
    """The SQL condition on ``members`` that selects the rule's members at ``now``."""
    if isinstance(rule, AllOf):
        return and_(true(), *(condition(r, now) for r in rule.all))
    if isinstance(rule, AnyOf):
        return or_(false(), *(condition(r, now) for r in rule.any))
    if isinstance(rule, InRule):
        return _in(rule, now)
    if isinstance(rule, InterestsRule):

        def has(values: list[str]) -> ColumnElement[bool]:
            return Member.id.in_(
                select(MemberInterest.member_id).where(MemberInterest.interest.in_(values))
            )

        if rule.match == "any":
            return has(rule.values)
        return and_(*(has([v]) for v in rule.values))
    if isinstance(rule, WithinRule):
        column = Member.created_at if rule.field == "joined_within_days" else Member.last_active_at
        return column >= now - timedelta(days=rule.days)
    if isinstance(rule, PointsRule):
        bounds = []
        if rule.min is not None:
            bounds.append(Member.points_balance >= rule.min)
        if rule.max is not None:
            bounds.append(Member.points_balance <= rule.max)
        return and_(*bounds)
    return Member.marketing_consent.is_(rule.value)


def _in(rule: InRule, now: datetime) -> ColumnElement[bool]:
    if rule.field == "age_band":
        ranges = [birth_years_of(AgeBand(v), now.year) for v in rule.values]
        return or_(*(Member.birth_year.between(low, high) for low, high in ranges))
    if rule.field == "community":
        return Member.id.in_(
            select(Membership.member_id).where(Membership.community_id.in_(rule.values))
        )
    column = {
        "gender": Member.gender,
        "country": Member.country,
        "province": Member.province,
        "city": Member.city,
        "channel": Member.channel,
        "tier": Member.tier,
    }[rule.field]
    return column.in_(rule.values)


def in_python(rule: Rule, member: dict[str, Any], now: datetime) -> bool:
    """The same rule evaluated on a plain dict: the tests' reference, not used in serving."""
    if isinstance(rule, AllOf):
        return all(in_python(r, member, now) for r in rule.all)
    if isinstance(rule, AnyOf):
        return any(in_python(r, member, now) for r in rule.any)
    if isinstance(rule, InRule):
        if rule.field == "age_band":
            year = member["birth_year"]
            return year is not None and any(
                low <= year <= high
                for low, high in (birth_years_of(AgeBand(v), now.year) for v in rule.values)
            )
        if rule.field == "community":
            return bool(set(member["communities"]) & set(rule.values))
        return member[rule.field] in rule.values
    if isinstance(rule, InterestsRule):
        have = set(member["interests"])
        return bool(have & set(rule.values)) if rule.match == "any" else set(rule.values) <= have
    if isinstance(rule, WithinRule):
        key = "created_at" if rule.field == "joined_within_days" else "last_active_at"
        stamp = member[key]
        return stamp is not None and stamp >= now - timedelta(days=rule.days)
    if isinstance(rule, PointsRule):
        points = member["points_balance"]
        return (rule.min is None or points >= rule.min) and (rule.max is None or points <= rule.max)
    return bool(member["marketing_consent"]) is rule.value
