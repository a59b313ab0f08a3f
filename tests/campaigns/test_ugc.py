"""UGC contest: entries are own published posts, voting rules, vote rings, judges, winners."""

from __future__ import annotations

from typing import Any

from shared.auth import Role
from tests.campaigns.conftest import OPERATOR, Harness
from tests.conftest import auth

RULES: dict[str, Any] = {
    "winners": 2,
    "prize": {"kind": "points", "points": 30},
    "votes_per_day": 2,
}


async def test_an_entry_must_be_the_entrants_published_post_in_the_community(
    harness: Harness,
) -> None:
    campaign = await harness.active("ugc", RULES)
    path = f"/v1/campaigns/{campaign['id']}/entries"
    author, other = await harness.member(), await harness.member()
    own = await harness.post(author)
    elsewhere = await harness.post(author, community_id="another-community")

    for body in ({"post_id": "missing"}, {"post_id": own}, {"post_id": elsewhere}, None):
        member = other if body == {"post_id": own} else author
        refused = await harness.post_as(member, path, body)
        assert refused.status_code == 422, refused.text
        assert refused.json()["field"] == "post_id"
    entered = await harness.post_as(author, path, {"post_id": own})
    assert entered.status_code == 201
    assert entered.json()["post_id"] == own
    twice = await harness.post_as(author, path, {"post_id": own})
    assert twice.status_code == 409
    assert len(await harness.events("campaign.entry_submitted")) == 1


async def test_votes_respect_the_daily_quota_and_no_self_votes(harness: Harness) -> None:
    campaign = await harness.active("ugc", RULES)
    path = f"/v1/campaigns/{campaign['id']}"
    authors = [await harness.member() for _ in range(3)]
    entries = []
    for author in authors:
        response = await harness.post_as(
            author, f"{path}/entries", {"post_id": await harness.post(author)}
        )
        entries.append(response.json()["id"])
    voter = await harness.member()

    self_vote = await harness.post_as(authors[0], f"{path}/votes", {"entry_id": entries[0]})
    assert self_vote.status_code == 422
    assert self_vote.json()["type"].endswith("/self-vote")
    first = await harness.post_as(voter, f"{path}/votes", {"entry_id": entries[0]})
    assert first.json()["votes_left_today"] == 1
    again = await harness.post_as(voter, f"{path}/votes", {"entry_id": entries[0]})
    assert again.status_code == 409
    assert again.json()["type"].endswith("/already-voted")
    assert (await harness.post_as(voter, f"{path}/votes", {"entry_id": entries[1]})).is_success
    over = await harness.post_as(voter, f"{path}/votes", {"entry_id": entries[2]})
    assert over.status_code == 409
    assert over.json()["type"].endswith("/vote-quota-exceeded")
    harness.clock.advance(days=1)
    assert (await harness.post_as(voter, f"{path}/votes", {"entry_id": entries[2]})).is_success
    missing = await harness.post_as(voter, f"{path}/votes", {"entry_id": "nope"})
    assert missing.status_code == 404
    assert len(await harness.events("campaign.voted")) == 3


async def test_members_voting_for_each_other_are_flagged_for_review(harness: Harness) -> None:
    campaign = await harness.active("ugc", RULES)
    path = f"/v1/campaigns/{campaign['id']}"
    alice, bob = await harness.member(), await harness.member()
    moderator = await harness.member(role="moderator")
    entry = {}
    for who in (alice, bob):
        response = await harness.post_as(
            who, f"{path}/entries", {"post_id": await harness.post(who)}
        )
        entry[who] = response.json()["id"]
    first = await harness.post_as(alice, f"{path}/votes", {"entry_id": entry[bob]})
    assert first.json()["flagged"] is False
    second = await harness.post_as(bob, f"{path}/votes", {"entry_id": entry[alice]})
    assert second.json()["flagged"] is True
    flags = await harness.client.get(f"{path}/votes", headers=auth(Role.MODERATOR, moderator))
    [flag] = flags.json()["items"]
    assert {flag["member_a"], flag["member_b"]} == {alice, bob}
    as_member = await harness.client.get(f"{path}/votes", headers=auth(Role.MEMBER, alice))
    assert as_member.status_code == 403


async def test_judges_scores_blend_into_the_ranking_and_top_n_win(harness: Harness) -> None:
    campaign = await harness.active("ugc", {**RULES, "judge_weight": 0.5, "votes_per_day": 5})
    path = f"/v1/campaigns/{campaign['id']}"
    authors = [await harness.member() for _ in range(3)]
    entries = []
    for author in authors:
        response = await harness.post_as(
            author, f"{path}/entries", {"post_id": await harness.post(author)}
        )
        entries.append(response.json()["id"])
    voters = [await harness.member() for _ in range(4)]
    # Entry 0: 4 votes; entry 1: 2 votes; entry 2: none but the judges love it.
    for i, voter in enumerate(voters):
        await harness.post_as(voter, f"{path}/votes", {"entry_id": entries[0]})
        if i < 2:
            await harness.post_as(voter, f"{path}/votes", {"entry_id": entries[1]})
    for entry_id, score in ((entries[0], 0), (entries[1], 40), (entries[2], 90)):
        judged = await harness.client.patch(
            f"{path}/entries/{entry_id}", json={"judge_score": score}, headers=OPERATOR
        )
        assert judged.status_code == 200
    bad = await harness.client.patch(
        f"{path}/entries/{entries[0]}", json={"judge_score": 101}, headers=OPERATOR
    )
    assert bad.status_code == 422

    ranked = (await harness.client.get(f"{path}/entries", headers=OPERATOR)).json()["items"]
    # 0: 0.5*100 + 0 = 50; 1: 0.5*50 + 20 = 45; 2: 0 + 45 = 45 (fewer votes, ranks after 1).
    assert [(e["id"], e["score"]) for e in ranked] == [
        (entries[0], 50.0),
        (entries[1], 45.0),
        (entries[2], 45.0),
    ]
    await harness.client.post(f"{path}/end", headers=OPERATOR)
    settled = (await harness.client.post(f"{path}/settle", headers=OPERATOR)).json()
    assert (settled["grants"], settled["points"]) == (2, 60)
    winners = await harness.events("campaign.winner_selected")
    assert [(w.data["member_id"], w.data["rank"]) for w in winners] == [
        (authors[0], 1),
        (authors[1], 2),
    ]
