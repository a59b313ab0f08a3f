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
