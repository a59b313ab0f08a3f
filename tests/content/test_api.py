"""Posts of every type, interactions, counters under bursts, authorisation and bad input."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event

from services.content.models import Post
from services.content.service import post_service
from shared.app import SQLITE_CONCURRENT_TRANSACTIONS
from shared.auth import Role
from tests.conftest import auth, eventually
from tests.content.conftest import Content, article

FUTURE = (datetime.now(UTC) + timedelta(days=3)).isoformat()

TYPES: dict[str, dict[str, Any]] = {
    "article": {"body": "Long read", "cover_url": "https://cdn.example.com/c.jpg"},
    "image_text": {"body": "Look", "image_urls": ["https://cdn.example.com/1.jpg"]},
    "video": {"media_url": "https://cdn.example.com/v.mp4", "duration_s": 95},
    "audio": {"media_url": "https://cdn.example.com/a.mp3", "duration_s": 1800},
    "poll": {
        "options": [{"id": "a", "text": "Espresso"}, {"id": "b", "text": "Filter"}],
        "multiple": False,
        "closes_at": FUTURE,
    },
    "quiz": {
        "questions": [
            {
                "id": "q1",
                "text": "Ideal brew temperature?",
                "options": [{"id": "a", "text": "70"}, {"id": "b", "text": "93"}],
                "correct_option_ids": ["b"],
                "explanation": "90-96 degrees extracts best.",
            },
            {
                "id": "q2",
                "text": "Arabica or robusta has more caffeine?",
                "options": [{"id": "a", "text": "arabica"}, {"id": "r", "text": "robusta"}],
                "correct_option_ids": ["r"],
            },
        ]
    },
    "survey": {
        "questions": [
            {
                "id": "s1",
                "kind": "choice",
                "text": "Favourite?",
                "options": [{"id": "x", "text": "Latte"}, {"id": "y", "text": "Mocha"}],
            },
            {"id": "s2", "kind": "rating", "text": "Rate us", "scale_max": 5},
            {"id": "s3", "kind": "text", "text": "Anything else?", "required": False},
        ]
    },
    "livestream": {"starts_at": FUTURE, "stream_url": "https://live.example.com/room/1"},
}


def typed(community_id: str, type_: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": type_,
        "community_id": community_id,
        "title": f"A {type_}",
        **TYPES[type_],
        **extra,
    }


async def setup(content: Content) -> tuple[str, str, dict[str, str]]:
    community = await content.community()
    author, headers = await content.member_in(community)
    return community, author, headers


@pytest.mark.parametrize("type_", sorted(TYPES))
async def test_each_post_type_is_published_with_its_payload_and_event(
    content: Content, type_: str
) -> None:
    community, author, headers = await setup(content)
    post = await content.post(headers, typed(community, type_))
    assert post["type"] == type_
    assert post["status"] == "published"
    assert post["author_id"] == author
    assert post["author_kind"] == "member"
    assert set(TYPES[type_]) - {"body"} <= set(post["payload"]) | {"body"}
    [event] = await content.events("post.published")
    assert event.data["post_id"] == post["id"]
    assert event.data["post_type"] == type_
    assert event.subject == post["id"]


async def test_staff_post_is_authored_as_staff(content: Content) -> None:
    community = await content.community()
    post = await content.post(auth(Role.OPERATOR), article(community))
    assert post["author_kind"] == "staff"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "poll", "options": []}, "options"),
        ({"type": "poll"}, "options"),
        (
            {
                "type": "quiz",
                "questions": [
                    {
                        "id": "q",
                        "text": "?",
                        "options": [{"id": "a", "text": "x"}, {"id": "b", "text": "y"}],
                        "correct_option_ids": ["z"],
                    }
                ],
            },
            "questions.0",
        ),
        ({"type": "video", "media_url": "not a url", "duration_s": 3}, "media_url"),
        ({"type": "article", "body": "x" * 20_001}, "body"),
        ({"type": "article", "body": "x", "source": {"origin": "repost"}}, "source"),
        (
            {"type": "article", "body": "x", "source": {"origin": "repost", "name": "Weibo"}},
            "source",
        ),
        ({"type": "carousel", "body": "x"}, "body"),
        ({"type": "article", "body": "x", "colour": "red"}, "colour"),
        ({"type": "article", "body": "x", "publish_at": "2030-01-01T10:00:00"}, "publish_at"),
    ],
)
async def test_wrong_type_specific_fields_are_422_naming_the_field(
    content: Content, body: dict[str, Any], field: str
) -> None:
    community, _, headers = await setup(content)
    response = await content.client.post(
        "/v1/posts", json={"community_id": community, **body}, headers=headers
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert any(e["field"].endswith(field) for e in response.json()["errors"])
    assert await content.events() == []


async def test_a_repost_with_its_source_is_accepted(content: Content) -> None:
    community, _, headers = await setup(content)
    source = {
        "origin": "repost",
        "name": "Coffee Daily",
        "url": "https://coffee.example.com/a/1",
        "licence": "CC BY 4.0",
    }
    post = await content.post(headers, article(community, source=source))
    assert post["source"]["origin"] == "repost"
    assert post["source"]["name"] == "Coffee Daily"
    [event] = await content.events("post.published")
    assert event.data["origin"] == "repost"


async def test_posting_to_an_unknown_community_is_422_naming_community_id(content: Content) -> None:
    response = await content.client.post(
        "/v1/posts", json=article(str(uuid.uuid4())), headers=auth(Role.OPERATOR)
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body.community_id"


async def test_a_scheduled_time_in_the_past_is_422(content: Content) -> None:
    community, _, headers = await setup(content)
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    response = await content.client.post(
        "/v1/posts", json=article(community, publish_at=past), headers=headers
    )
    assert response.status_code == 422
    assert response.json()["type"].endswith("/invalid-schedule")


async def test_members_post_only_in_communities_they_joined(content: Content) -> None:
    community = await content.community()
    response = await content.client.post(
        "/v1/posts", json=article(community), headers=auth(Role.MEMBER)
    )
    assert response.status_code == 403


async def test_partners_need_content_scopes(content: Content) -> None:
    community, _, headers = await setup(content)
    await content.post(headers, article(community))
    path = f"/v1/posts?community_id={community}"
    assert (await content.client.get(path)).status_code == 401
    assert (await content.client.get(path, headers=auth(Role.PARTNER))).status_code == 403
    reader = auth(Role.PARTNER, scopes=frozenset({"content:read"}))
    assert (await content.client.get(path, headers=reader)).status_code == 200
    writes = await content.client.post("/v1/posts", json=article(community), headers=reader)
    assert writes.status_code == 403
    writer = auth(Role.PARTNER, scopes=frozenset({"content:write"}))
    assert (
        await content.client.post("/v1/posts", json=article(community), headers=writer)
    ).status_code == 201


async def test_only_the_author_edits_and_author_or_moderator_removes(content: Content) -> None:
    community, _, headers = await setup(content)
    post = await content.post(headers, article(community))
    path = f"/v1/posts/{post['id']}"
    _, stranger = await content.member_in(community)
    assert (
        await content.client.patch(path, json={"title": "Mine"}, headers=stranger)
    ).status_code == 403
    edited = await content.client.patch(path, json={"title": "Better title"}, headers=headers)
    assert edited.json()["title"] == "Better title"
    assert (await content.client.delete(path, headers=stranger)).status_code == 403
    _, owner = await content.member_in(community, role="moderator")
    removal = await content.client.delete(f"{path}?reason=off-topic", headers=owner)
    assert removal.status_code == 204
    [removed] = await content.events("post.removed")
    assert removed.data["reason"] == "moderator"
    audit = await content.client.get(
        f"/v1/moderation/actions?community_id={community}", headers=owner
    )
    [entry] = audit.json()["items"]
    assert (entry["action"], entry["reason"], entry["target_id"]) == (
        "remove",
        "off-topic",
        post["id"],
    )
    # A removed post is gone for readers, still there for moderators.
    assert (await content.client.get(path, headers=stranger)).status_code == 404
    assert (await content.client.get(path, headers=owner)).json()["status"] == "removed"


async def test_feed_is_newest_first_with_counters_and_a_cursor(content: Content) -> None:
    community, _, headers = await setup(content)
    ids = [
        (await content.post(headers, article(community, body=f"post {n}")))["id"] for n in range(5)
    ]
    await content.client.post(f"/v1/posts/{ids[0]}/reactions", json={}, headers=headers)
    seen: list[str] = []
    cursor = None
    while True:
        query = f"/v1/posts?community_id={community}&limit=2" + (
            f"&cursor={cursor}" if cursor else ""
        )
        page = (await content.client.get(query, headers=headers)).json()
        seen += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    oldest = (await content.client.get(f"/v1/posts/{ids[0]}", headers=headers)).json()
    assert oldest["counters"]["likes"] == 1


async def test_pii_is_masked_in_posts_and_comments_on_write(content: Content) -> None:
    community, _, headers = await setup(content)
    post = await content.post(
        headers, article(community, title="加我 13812345678", body="邮箱 fan@example.com")
    )
    assert post["title"] == "加我 138****5678"
    assert post["body"] == "邮箱 f***@example.com"
    comment = await content.client.post(
        f"/v1/posts/{post['id']}/comments",
        json={"body": "身份证 11010519491231002X"},
        headers=headers,
    )
    assert comment.json()["body"] == "身份证 110105********002X"


async def test_comments_thread_one_level_and_page_oldest_first(content: Content) -> None:
    community, author, headers = await setup(content)
    post = await content.post(headers, article(community))
    path = f"/v1/posts/{post['id']}/comments"
    top = (await content.client.post(path, json={"body": "first"}, headers=headers)).json()
    reply = await content.client.post(
        path, json={"body": "re", "parent_id": top["id"]}, headers=headers
    )
    assert reply.status_code == 201
    deeper = await content.client.post(
        path, json={"body": "re re", "parent_id": reply.json()["id"]}, headers=headers
    )
    assert deeper.status_code == 422
    listed = (await content.client.get(path, headers=headers)).json()
    assert [c["body"] for c in listed["items"]] == ["first", "re"]
    [created, replied] = await content.events("comment.created")
    assert created.data["post_author_id"] == author
    assert replied.data["parent_id"] == top["id"]


async def test_comment_edit_and_delete_by_author_keep_the_counter_exact(content: Content) -> None:
    community, _, headers = await setup(content)
    post = await content.post(headers, article(community))
    _, other = await content.member_in(community)
    path = f"/v1/posts/{post['id']}/comments"
    comment = (await content.client.post(path, json={"body": "nice"}, headers=other)).json()
    one = f"{path}/{comment['id']}"
    assert (
        await content.client.patch(one, json={"body": "hack"}, headers=headers)
    ).status_code == 403
    edited = await content.client.patch(one, json={"body": "very nice"}, headers=other)
    assert edited.json()["body"] == "very nice"
    assert edited.json()["edited_at"] is not None
    assert (await content.client.delete(one, headers=headers)).status_code == 403
    assert (await content.client.delete(one, headers=other)).status_code == 204
    assert (await content.client.delete(one, headers=other)).status_code == 404
    read = await content.get_post(post["id"], headers)
    assert read["counters"]["comments"] == 0
    assert len(await content.events("comment.deleted")) == 1


async def test_commenting_on_a_removed_post_is_refused(content: Content) -> None:
    community, _, headers = await setup(content)
    post = await content.post(headers, article(community))
    await content.client.delete(f"/v1/posts/{post['id']}", headers=headers)
    _, moderator = await content.member_in(community, role="moderator")
    response = await content.client.post(
        f"/v1/posts/{post['id']}/comments", json={"body": "late"}, headers=moderator
    )
    assert response.status_code == 409
    assert response.json()["type"].endswith("/post-not-published")


async def test_same_idempotency_key_creates_one_comment(content: Content) -> None:
    community, _, headers = await setup(content)
    post = await content.post(headers, article(community))
    path = f"/v1/posts/{post['id']}/comments"
    key = {**headers, "Idempotency-Key": "comment-1"}
    first = await content.client.post(path, json={"body": "once"}, headers=key)
    second = await content.client.post(path, json={"body": "once"}, headers=key)
    assert first.status_code == second.status_code == 201
    assert second.json()["id"] == first.json()["id"]
    assert second.headers["idempotent-replayed"] == "true"
    assert len((await content.client.get(path, headers=headers)).json()["items"]) == 1
    assert (await content.get_post(post["id"], headers))["counters"]["comments"] == 1
    assert len(await content.events("comment.created")) == 1


async def test_the_same_comment_twice_in_a_row_is_refused_as_spam(content: Content) -> None:
    community, _, headers = await setup(content)
    post = await content.post(headers, article(community))
    path = f"/v1/posts/{post['id']}/comments"
    assert (
        await content.client.post(path, json={"body": "buy now"}, headers=headers)
    ).status_code == 201
    again = await content.client.post(path, json={"body": "buy now"}, headers=headers)
    assert again.status_code == 409
    assert again.json()["type"].endswith("/duplicate-content")


async def test_members_are_rate_limited_per_minute(content: Content) -> None:
    community, _, headers = await setup(content)
    for n in range(5):
        await content.post(headers, article(community, body=f"post number {n}"))
    limited = await content.client.post(
        "/v1/posts", json=article(community, body="one more"), headers=headers
    )
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "60"


async def test_reactions_are_one_per_member_and_kind(content: Content) -> None:
    community, author, headers = await setup(content)
    post = await content.post(headers, article(community))
    path = f"/v1/posts/{post['id']}/reactions"
    _, fan = await content.member_in(community)
    assert (await content.client.post(path, json={"kind": "like"}, headers=fan)).status_code == 201
    assert (await content.client.post(path, json={"kind": "like"}, headers=fan)).status_code == 200
    assert (await content.client.post(path, json={"kind": "wow"}, headers=fan)).status_code == 201
    counters = (await content.get_post(post["id"], headers))["counters"]
    assert (counters["likes"], counters["reactions"]) == (1, 2)
    events = await content.events("reaction.added")
    assert len(events) == 2
    assert {e.data["post_author_id"] for e in events} == {author}
    assert (await content.client.delete(f"{path}/like", headers=fan)).status_code == 204
    assert (await content.client.delete(f"{path}/like", headers=fan)).status_code == 404
    counters = (await content.get_post(post["id"], headers))["counters"]
    assert (counters["likes"], counters["reactions"]) == (0, 1)
    assert len(await content.events("reaction.removed")) == 1
    staff = await content.client.post(path, json={"kind": "like"}, headers=auth(Role.OPERATOR))
    assert staff.status_code == 403


async def test_views_count_once_per_member_per_day_and_may_come_through_a_share(
    content: Content,
) -> None:
    community, _, headers = await setup(content)
    post = await content.post(headers, article(community))
    _, fan = await content.member_in(community)
    _, friend = await content.member_in(community)
    share = await content.client.post(
        f"/v1/posts/{post['id']}/shares", json={"channel": "wechat"}, headers=fan
    )
    assert share.status_code == 201
    path = f"/v1/posts/{post['id']}/views"
    first = await content.client.post(path, json={"share_id": share.json()["id"]}, headers=friend)
    again = await content.client.post(path, json={}, headers=friend)
    assert (first.status_code, again.status_code) == (201, 200)
    assert (first.json()["counted"], again.json()["counted"]) == (True, False)
    bogus = await content.client.post(path, json={"share_id": str(uuid.uuid4())}, headers=fan)
    assert bogus.status_code == 422
    [viewed] = await content.events("post.viewed")
    assert viewed.data["via_share_id"] == share.json()["id"]
    [shared] = await content.events("post.shared")
    assert shared.data["channel"] == "wechat"
    counters = (await content.get_post(post["id"], headers))["counters"]
    assert (counters["views"], counters["shares"]) == (1, 1)


async def test_poll_votes_once_and_tallies(content: Content) -> None:
    community, _, headers = await setup(content)
    poll = await content.post(headers, typed(community, "poll"))
    path = f"/v1/posts/{poll['id']}/votes"
    _, fan = await content.member_in(community)
    voted = await content.client.post(path, json={"option_ids": ["b"]}, headers=fan)
    assert voted.status_code == 201
    assert {o["id"]: o["votes"] for o in voted.json()["options"]} == {"a": 0, "b": 1}
    assert voted.json()["my_option_ids"] == ["b"]
    twice = await content.client.post(path, json={"option_ids": ["a"]}, headers=fan)
    assert twice.status_code == 409
    _, other = await content.member_in(community)
    both = await content.client.post(path, json={"option_ids": ["a", "b"]}, headers=other)
    assert both.status_code == 422  # single choice
    unknown = await content.client.post(path, json={"option_ids": ["z"]}, headers=other)
    assert unknown.status_code == 422
    results = (await content.client.get(path, headers=headers)).json()
    assert results["voters"] == 1
    [event] = await content.events("poll.voted")
    assert event.data["option_ids"] == ["b"]


async def test_quiz_is_scored_and_answers_stay_hidden_until_answered(content: Content) -> None:
    community, _, headers = await setup(content)
    quiz = await content.post(headers, typed(community, "quiz"))
    _, fan = await content.member_in(community)
    as_reader = await content.get_post(quiz["id"], fan)
    assert "correct_option_ids" not in as_reader["payload"]["questions"][0]
    assert "correct_option_ids" in quiz["payload"]["questions"][0]  # the author sees them
    path = f"/v1/posts/{quiz['id']}/answers"
    result = await content.client.post(
        path, json={"answers": {"q1": ["b"], "q2": ["a"]}}, headers=fan
    )
    assert result.status_code == 201
    body = result.json()
    assert (body["score"], body["max_score"], body["all_correct"]) == (1, 2, False)
    assert body["questions"][0]["explanation"] == "90-96 degrees extracts best."
    assert (await content.client.post(path, json={"answers": {}}, headers=fan)).status_code == 409
    mine = (await content.client.get(path, headers=fan)).json()["items"]
    assert [r["score"] for r in mine] == [1]
    [event] = await content.events("quiz.answered")
    assert (event.data["score"], event.data["max_score"]) == (1, 2)


async def test_a_quiz_answer_to_a_non_quiz_is_422(content: Content) -> None:
    community, _, headers = await setup(content)
    poll = await content.post(headers, typed(community, "poll"))
    response = await content.client.post(
        f"/v1/posts/{poll['id']}/answers", json={"answers": {"q1": ["a"]}}, headers=headers
    )
    assert response.status_code == 422
    assert response.json()["type"].endswith("/wrong-post-type")


async def test_survey_responses_are_validated_per_question(content: Content) -> None:
    community, _, headers = await setup(content)
    survey = await content.post(headers, typed(community, "survey"))
    path = f"/v1/posts/{survey['id']}/responses"
    _, fan = await content.member_in(community)
    for bad in (
        {"s1": ["x"]},  # s2 is required
        {"s1": ["x"], "s2": 9},  # out of scale
        {"s1": ["x", "y"], "s2": 3},  # single choice
        {"s1": ["x"], "s2": 3, "nope": "?"},
    ):
        response = await content.client.post(path, json={"answers": bad}, headers=fan)
        assert response.status_code == 422, bad
    good = {"s1": ["y"], "s2": 4, "s3": "call me 13812345678"}
    response = await content.client.post(path, json={"answers": good}, headers=fan)
    assert response.status_code == 201
    assert response.json()["answers"]["s3"] == "call me 138****5678"
    assert (await content.client.post(path, json={"answers": good}, headers=fan)).status_code == 409
    assert len(await content.events("survey.answered")) == 1


async def test_counters_are_exact_after_concurrent_bursts(content: Content) -> None:
    """200 reactions (20 of them repeats) and 50 comments at once: counters match the rows."""
    community, _, headers = await setup(content)
    post = await content.post(headers, article(community))
    fans = [(await content.member_in(community))[1] for _ in range(180)]

    async def react(fan: dict[str, str]) -> int:
        response = await content.client.post(
            f"/v1/posts/{post['id']}/reactions", json={"kind": "like"}, headers=fan
        )
        return response.status_code

    async def comment(n: int, fan: dict[str, str]) -> int:
        response = await content.client.post(
            f"/v1/posts/{post['id']}/comments", json={"body": f"great {n}"}, headers=fan
        )
        return response.status_code

    reactions = [react(h) for h in fans] + [react(h) for h in fans[:20]]
    comments = [comment(n, h) for n, h in enumerate(fans[:50])]
    codes = await asyncio.gather(*reactions, *comments)
    assert sorted(codes) == sorted([201] * 230 + [200] * 20)
    counters = (await content.get_post(post["id"], headers))["counters"]
    assert (counters["likes"], counters["reactions"], counters["comments"]) == (180, 180, 50)
    assert len(await content.events("reaction.added")) == 180
    assert len(await content.events("comment.created")) == 50


async def test_a_burst_of_concurrent_writers_all_succeed_with_exact_counters(
    own_content: Content,
) -> None:
    """On SQLite the busy timeout is set to zero here: a writer that found another one
    mid-transaction would fail at once ("database is locked"), so every one of the burst
    succeeding shows the writers wait their turn in the process instead of retrying.
    PostgreSQL locks rows and must give the same answers."""
    content = own_content
    if content.runtime.db.is_sqlite:

        @event.listens_for(content.runtime.db.sync_engine, "connect")
        def no_busy_wait(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA busy_timeout=0")
            cursor.close()

        await content.runtime.db.engine.dispose()  # pooled connections reconnect with it
    community, _, headers = await setup(content)
    post = await content.post(headers, article(community))
    fans = [(await content.member_in(community))[1] for _ in range(40)]

    async def act(fan: dict[str, str], what: str, body: dict[str, str]) -> int:
        response = await content.client.post(
            f"/v1/posts/{post['id']}/{what}", json=body, headers=fan
        )
        return response.status_code

    codes = await asyncio.gather(
        *(act(fan, "views", {}) for fan in fans),
        *(act(fan, "reactions", {"kind": "like"}) for fan in fans),
    )
    assert codes == [201] * 80
    counters = (await content.get_post(post["id"], headers))["counters"]
    assert (counters["views"], counters["likes"]) == (40, 40)


async def test_sqlite_processes_run_a_bounded_number_of_requests_at_once(
    content: Content, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite requests past the bound wait their turn and are then served, none refused;
    on PostgreSQL, unbounded by default, they all run at once."""
    community, _, headers = await setup(content)
    running, peak, release = 0, 0, asyncio.Event()
    feed = post_service.feed

    async def held_feed(*args: Any, **kwargs: Any) -> Any:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await release.wait()
            return await feed(*args, **kwargs)
        finally:
            running -= 1

    monkeypatch.setattr(post_service, "feed", held_feed)
    params = {"community_id": community}
    sent = SQLITE_CONCURRENT_TRANSACTIONS + 4
    expected = SQLITE_CONCURRENT_TRANSACTIONS if content.runtime.db.is_sqlite else sent
    requests = [
        asyncio.create_task(content.client.get("/v1/posts", params=params, headers=headers))
        for _ in range(sent)
    ]
    await eventually(lambda: running == expected)
    await asyncio.sleep(0.05)  # room for any request past the bound to get in
    assert running == expected
    release.set()
    responses = await asyncio.gather(*requests)
    assert [r.status_code for r in responses] == [200] * sent
    assert peak == expected


async def test_calendar_lists_a_community_range_for_moderators_only(content: Content) -> None:
    community, _, headers = await setup(content)
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    planned = await content.post(headers, article(community, publish_at=tomorrow.isoformat()))
    assert planned["status"] == "scheduled"
    now_post = await content.post(headers, article(community, body="now"))
    later = await content.post(
        headers,
        article(community, body="later", publish_at=(tomorrow + timedelta(days=30)).isoformat()),
    )
    start = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    end = (tomorrow + timedelta(days=1)).date().isoformat()
    path = f"/v1/posts/calendar?community_id={community}&from={start}&to={end}"
    assert (await content.client.get(path, headers=headers)).status_code == 403
    listed = await content.client.get(path, headers=auth(Role.OPERATOR))
    ids = [p["id"] for p in listed.json()["items"]]
    assert ids == [now_post["id"], planned["id"]]
    assert later["id"] not in ids
    staff = auth(Role.MODERATOR, communities=frozenset({community}))
    assert (await content.client.get(path, headers=staff)).status_code == 200
    other = auth(Role.MODERATOR, communities=frozenset({"elsewhere"}))
    assert (await content.client.get(path, headers=other)).status_code == 403


async def test_a_draft_is_private_until_published(content: Content) -> None:
    community, _, headers = await setup(content)
    draft = await content.post(headers, article(community, draft=True))
    assert draft["status"] == "draft"
    _, fan = await content.member_in(community)
    assert (await content.client.get(f"/v1/posts/{draft['id']}", headers=fan)).status_code == 404
    assert await content.events("post.published") == []
    published = await content.client.post(f"/v1/posts/{draft['id']}/publish", headers=headers)
    assert published.json()["status"] == "published"
    assert len(await content.events("post.published")) == 1
    again = await content.client.post(f"/v1/posts/{draft['id']}/publish", headers=headers)
    assert again.status_code == 409


async def test_calendar_days_are_the_community_s_local_days(content: Content) -> None:
    community = await content.community(timezone="Asia/Shanghai")  # UTC+8, no DST
    _, headers = await content.member_in(community)
    shanghai = timedelta(hours=8)
    day = (datetime.now(UTC) + shanghai).date() + timedelta(days=2)
    midnight_utc = datetime(day.year, day.month, day.day, tzinfo=UTC) - shanghai
    late = midnight_utc + timedelta(hours=23, minutes=30)  # 23:30 local on `day`
    next_morning = midnight_utc + timedelta(hours=24, minutes=30)  # 00:30 local the day after
    inside = await content.post(headers, article(community, publish_at=late.isoformat()))
    outside = await content.post(
        headers, article(community, body="next", publish_at=next_morning.isoformat())
    )
    path = f"/v1/posts/calendar?community_id={community}&from={day}&to={day}"
    listed = (await content.client.get(path, headers=auth(Role.OPERATOR))).json()["items"]
    assert [p["id"] for p in listed] == [inside["id"]]
    assert outside["id"] not in [p["id"] for p in listed]


async def test_a_closed_poll_takes_no_votes(content: Content) -> None:
    community, _, headers = await setup(content)
    poll = await content.post(headers, typed(community, "poll"))
    async with content.runtime.db.session() as session:  # time passes: the poll closes
        row = await session.get(Post, poll["id"])
        assert row is not None
        row.payload = {
            **row.payload,
            "closes_at": (datetime.now(UTC) - timedelta(seconds=1)).isoformat(),
        }
    _, fan = await content.member_in(community)
    response = await content.client.post(
        f"/v1/posts/{poll['id']}/votes", json={"option_ids": ["a"]}, headers=fan
    )
    assert response.status_code == 409
    assert response.json()["type"].endswith("/poll-closed")


async def test_comments_page_with_a_cursor_and_a_forged_cursor_is_422(content: Content) -> None:
    community, _, headers = await setup(content)
    post = await content.post(headers, article(community))
    path = f"/v1/posts/{post['id']}/comments"
    fans = [(await content.member_in(community))[1] for _ in range(5)]
    for n, fan in enumerate(fans):
        assert (
            await content.client.post(path, json={"body": f"c{n}"}, headers=fan)
        ).status_code == 201
    first = (await content.client.get(f"{path}?limit=3", headers=headers)).json()
    rest = (
        await content.client.get(f"{path}?limit=3&cursor={first['next_cursor']}", headers=headers)
    ).json()
    assert [c["body"] for c in first["items"] + rest["items"]] == [f"c{n}" for n in range(5)]
    assert rest["next_cursor"] is None
    forged = await content.client.get(f"{path}?cursor=not-a-cursor", headers=headers)
    assert forged.status_code == 422
