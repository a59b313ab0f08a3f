"""Segments: the database's answer equals a plain Python filter over thousands of members."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter
from sqlalchemy import insert

from services.members.models import Community, Member, MemberInterest, Membership
from services.members.segments import Rule, in_python
from services.members.taxonomy import INTERESTS, Channel, Gender
from shared.auth import Role
from shared.db import utcnow
from tests.conftest import auth
from tests.members.conftest import OPERATOR, as_member, register, runtime_of

POPULATION = 2500
COMMUNITIES = ["c-tea", "c-run", "c-cam"]
PROVINCES = ["CN-SH", "CN-BJ", "CN-GD", "CN-ZJ"]


async def seed(client: httpx.AsyncClient, rng: random.Random) -> list[dict[str, Any]]:
    """Thousands of members written straight into the service's tables (fast, still real SQL)."""
    now = utcnow()
    people, interests, memberships = [], [], []
    owner = str(uuid.uuid4())
    for i in range(POPULATION):
        active = rng.random() < 0.7
        person = {
            "id": owner if i == 0 else str(uuid.uuid4()),
            "nickname": f"m{i}",
            "gender": rng.choice([*list(Gender), None]),
            "birth_year": rng.choice([None, *range(1955, 2012)]),
            "country": "CN",
            "province": rng.choice(PROVINCES),
            "city": None,
            "channel": rng.choice(list(Channel)).value,
            "tier": rng.choice([None, "fan", "core_fan", "super_fan"]),
            "points_balance": rng.randrange(0, 5000),
            "marketing_consent": rng.random() < 0.4,
            "created_at": now - timedelta(days=rng.randrange(0, 400), minutes=rng.randrange(1440)),
            "last_active_at": now - timedelta(days=rng.randrange(0, 60)) if active else None,
            "updated_at": now,
        }
        person["gender"] = person["gender"].value if person["gender"] else None
        people.append(person)
        for interest in rng.sample(sorted(INTERESTS), rng.randrange(0, 4)):
            interests.append({"member_id": person["id"], "interest": interest})
        for community in rng.sample(COMMUNITIES, rng.randrange(0, 3)):
            memberships.append(
                {"community_id": community, "member_id": person["id"], "role": "member",
                 "joined_at": now}
            )  # fmt: skip
    async with runtime_of(client).db.session() as session:
        await session.execute(insert(Member), people)
        await session.execute(insert(MemberInterest), interests)
        await session.execute(
            insert(Community),
            [
                {"id": c, "name": c, "description": "", "rules": "", "visibility": "public",
                 "timezone": "Asia/Shanghai", "owner_id": owner, "invite_code": c.upper(),
                 "member_count": 0, "created_at": now, "updated_at": now}
                for c in COMMUNITIES
            ],
        )  # fmt: skip
        await session.execute(insert(Membership), memberships)
    for person in people:
        person["interests"] = [r["interest"] for r in interests if r["member_id"] == person["id"]]
        person["communities"] = [
            m["community_id"] for m in memberships if m["member_id"] == person["id"]
        ]
    return people


RULES: list[dict[str, Any]] = [
    {"field": "gender", "values": ["female"]},
    {"field": "age_band", "values": ["18-24", "25-34"]},
    {"field": "province", "values": ["CN-SH", "CN-ZJ"]},
    {"field": "interests", "values": ["tea", "coffee"]},
    {"field": "interests", "match": "all", "values": ["tea", "music"]},
    {"field": "channel", "values": ["wechat", "douyin"]},
    {"field": "tier", "values": ["super_fan"]},
    {"field": "joined_within_days", "days": 30},
    {"field": "active_within_days", "days": 7},
    {"field": "community", "values": ["c-tea"]},
    {"field": "points", "min": 1000, "max": 2000},
    {"field": "marketing_consent", "value": True},
    {"all": [{"field": "gender", "values": ["male"]}, {"field": "points", "min": 2500}]},
    {
        "any": [
            {"all": [{"field": "community", "values": ["c-run"]},
                     {"field": "tier", "values": ["fan"]}]},
            {"field": "active_within_days", "days": 3},
            {"field": "age_band", "values": ["55+"]},
        ]
    },
    {"all": [{"any": [{"field": "province", "values": ["CN-GD"]},
                      {"field": "interests", "values": ["fitness"]}]},
             {"field": "marketing_consent", "value": False},
             {"field": "joined_within_days", "days": 200}]},
]  # fmt: skip


async def test_segment_counts_and_members_match_a_python_filter(members: httpx.AsyncClient) -> None:
    people = await seed(members, random.Random(20261122))
    adapter = TypeAdapter(Rule)
    for i, rules in enumerate(RULES):
        now = utcnow()
        expected = sorted(
            p["id"] for p in people if in_python(adapter.validate_python(rules), p, now)
        )
        preview = await members.post(
            "/v1/segments/preview", json={"rules": rules}, headers=OPERATOR
        )
        assert preview.status_code == 200, preview.text
        assert preview.json()["count"] == len(expected), rules
        created = await members.post(
            "/v1/segments", json={"name": f"s{i}", "rules": rules}, headers=OPERATOR
        )
        assert created.status_code == 201, created.text
        listed, cursor = [], None
        while True:
            params = {"limit": 200} | ({"cursor": cursor} if cursor else {})
            page = await members.get(
                f"/v1/segments/{created.json()['id']}/members", params=params, headers=OPERATOR
            )
            assert page.status_code == 200
            listed += [m["id"] for m in page.json()["items"]]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
        assert listed == expected, rules
        assert 0 < len(expected) < POPULATION, f"rule {rules} does not discriminate"


async def test_membership_check_answers_yes_or_no(members: httpx.AsyncClient) -> None:
    fan = await register(members, gender="female")
    other = await register(members, gender="male")
    segment = await members.post(
        "/v1/segments",
        json={"name": "women", "rules": {"field": "gender", "values": ["female"]}},
        headers=OPERATOR,
    )
    path = f"/v1/segments/{segment.json()['id']}/members"
    assert (await members.get(f"{path}/{fan['id']}", headers=OPERATOR)).status_code == 204
    missing = await members.get(f"{path}/{other['id']}", headers=OPERATOR)
    assert missing.status_code == 404
    assert missing.json()["type"].endswith("/not-in-segment")
    partner = auth(Role.PARTNER, scopes=["segments:read"])
    assert (await members.get(f"{path}/{fan['id']}", headers=partner)).status_code == 204


@pytest.mark.parametrize(
    "rules",
    [
        {"field": "shoe_size", "values": ["42"]},
        {"field": "gender", "values": ["robot"]},
        {"field": "interests", "values": ["knitting-with-cats"]},
        {"field": "points", "min": 10, "max": 5},
        {"field": "points"},
        {"all": []},
        {"field": "community", "values": ["no-such-community"]},
        {"all": [{"all": [{"all": [{"all": [{"all": [{"field": "tier", "values": ["x"]}]}]}]}]}]},
        "gender = female",
    ],
)
async def test_bad_rules_are_422_naming_rules(members: httpx.AsyncClient, rules: Any) -> None:
    response = await members.post("/v1/segments/preview", json={"rules": rules}, headers=OPERATOR)
    assert response.status_code == 422, response.text
    assert any(e["field"].startswith("body.rules") for e in response.json()["errors"])


async def test_only_operators_and_scoped_partners_work_with_segments(
    members: httpx.AsyncClient,
) -> None:
    fan = await register(members)
    body = {"rules": {"field": "tier", "values": ["fan"]}}
    for headers, status in (
        (as_member(fan), 403),
        (auth(Role.MODERATOR, communities=["c"]), 403),
        (auth(Role.PARTNER, scopes=["members:read"]), 403),
        (auth(Role.PARTNER, scopes=["segments:read"]), 200),
        (OPERATOR, 200),
    ):
        response = await members.post("/v1/segments/preview", json=body, headers=headers)
        assert response.status_code == status, (headers, response.text)
