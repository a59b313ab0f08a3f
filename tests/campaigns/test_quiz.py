"""Quiz contest: participants' first answer counts; ranked by score, then time."""

from __future__ import annotations

import uuid
from typing import Any

from shared.events.contracts import content
from tests.campaigns.conftest import OPERATOR, Harness


async def answer(harness: Harness, post_id: str, member: str, score: int) -> None:
    await harness.event(
        content.QuizAnswered(
            post_id=post_id,
            community_id=harness.community_id,
            member_id=member,
            score=score,
            max_score=10,
            all_correct=score == 10,
            answered_at=harness.clock.now,
        ),
        str(uuid.uuid4()),
    )


async def test_ranking_is_score_then_earlier_answer_and_top_n_win(harness: Harness) -> None:
    quiz_post = str(uuid.uuid4())
    rules: dict[str, Any] = {
        "post_id": quiz_post,
        "winners": 2,
        "prize": {"kind": "points", "points": 10},
    }
    campaign = await harness.active("quiz", rules)
    path = f"/v1/campaigns/{campaign['id']}"
    fast, slow, low, outsider = [await harness.member() for _ in range(4)]
    for member in (fast, slow, low):
        assert (await harness.post_as(member, f"{path}/participants")).status_code == 201
    await answer(harness, quiz_post, fast, 9)
    harness.clock.advance(minutes=1)
    await answer(harness, quiz_post, slow, 9)
    await answer(harness, quiz_post, low, 3)
    await answer(harness, quiz_post, low, 10)  # a second attempt does not count
    await answer(harness, quiz_post, outsider, 10)  # never joined
    await answer(harness, str(uuid.uuid4()), low, 10)  # another quiz

    board = (await harness.client.get(f"{path}/leaderboard", headers=OPERATOR)).json()
    assert [(r["member_id"], r["score"]) for r in board["items"]] == [
        (fast, 9),
        (slow, 9),
        (low, 3),
    ]
    await harness.client.post(f"{path}/end", headers=OPERATOR)
    settled = (await harness.client.post(f"{path}/settle", headers=OPERATOR)).json()
    assert settled["points"] == 20
    winners = await harness.events("campaign.winner_selected")
    assert [w.data["member_id"] for w in winners] == [fast, slow]


RULES: dict[str, Any] = {"winners": 3, "prize": {"kind": "points", "points": 10}}


async def test_joining_is_checked_and_refusals_write_nothing(harness: Harness) -> None:
    draft = await harness.create("quiz", {**RULES, "post_id": str(uuid.uuid4())})
    campaign = await harness.active("quiz", {**RULES, "post_id": str(uuid.uuid4())})
    path = f"/v1/campaigns/{campaign['id']}"
    member = await harness.member()
    early = await harness.post_as(member, f"/v1/campaigns/{draft['id']}/participants")
    assert early.status_code == 409
    assert early.json()["type"].endswith("/campaign-not-open")
    stranger = await harness.post_as(str(uuid.uuid4()), f"{path}/participants")
    assert stranger.status_code == 403
    assert stranger.json()["type"].endswith("/not-community-member")
    assert (await harness.post_as(member, f"{path}/participants")).status_code == 201
    twice = await harness.post_as(member, f"{path}/participants")
    assert twice.status_code == 409
    assert twice.json()["type"].endswith("/already-joined")
    for other in ("entries", "checkins"):
        wrong = await harness.post_as(member, f"{path}/{other}")
        assert wrong.status_code == 409
        assert wrong.json()["type"].endswith("/wrong-campaign-type")
    listed = (await harness.client.get(f"{path}/participants", headers=OPERATOR)).json()
    assert [p["member_id"] for p in listed["items"]] == [member]
    assert len(await harness.events("campaign.joined")) == 1


async def test_answers_outside_the_window_do_not_count_and_silent_members_do_not_win(
    harness: Harness,
) -> None:
    quiz_post = str(uuid.uuid4())
    campaign = await harness.active("quiz", {**RULES, "post_id": quiz_post})
    path = f"/v1/campaigns/{campaign['id']}"
    answered, silent, late = [await harness.member() for _ in range(3)]
    for member in (answered, silent, late):
        assert (await harness.post_as(member, f"{path}/participants")).status_code == 201
    await answer(harness, quiz_post, answered, 4)
    await harness.client.post(f"{path}/end", headers=OPERATOR)
    harness.clock.advance(minutes=1)
    await answer(harness, quiz_post, late, 10)  # after the end: not counted
    settled = (await harness.client.post(f"{path}/settle", headers=OPERATOR)).json()
    assert (settled["grants"], settled["points"]) == (1, 10)
    [winner] = await harness.events("campaign.winner_selected")
    assert winner.data["member_id"] == answered
    again = await harness.client.post(f"{path}/settle", headers=OPERATOR)
    assert again.status_code == 409
    assert len(await harness.events("campaign.reward_granted")) == 1


async def test_prizes_stop_at_the_points_budget(harness: Harness) -> None:
    quiz_post = str(uuid.uuid4())
    campaign = await harness.active("quiz", {**RULES, "post_id": quiz_post}, budget_points=25)
    path = f"/v1/campaigns/{campaign['id']}"
    for score in (9, 8, 7):
        member = await harness.member()
        await harness.post_as(member, f"{path}/participants")
        await answer(harness, quiz_post, member, score)
    await harness.client.post(f"{path}/end", headers=OPERATOR)
    settled = (await harness.client.post(f"{path}/settle", headers=OPERATOR)).json()
    assert (settled["grants"], settled["points"]) == (2, 20)
    assert settled["campaign"]["spent_points"] == 20
