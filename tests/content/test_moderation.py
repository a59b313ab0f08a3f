"""Watched words, reports weighted by trust, the queue, decisions and their audit."""
# ruff: noqa: RUF001 - real Chinese text uses full-width punctuation

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from services.content.watchwords import RuleAction, RuleKind, WatchRule, screen
from shared.auth import Role
from shared.events.contracts.members import MemberJoinedCommunity
from tests.conftest import auth
from tests.content.conftest import Content, article, deliver

OPERATOR = auth(Role.OPERATOR)


def rule(value: str, action: RuleAction, kind: RuleKind = RuleKind.WORD, **kw: Any) -> WatchRule:
    return WatchRule(id=value, kind=kind, value=value, action=action, **kw)


@pytest.mark.parametrize(
    ("word", "text", "hit"),
    [
        ("代购", "专业代购，加微信", True),  # Chinese: substring, no spaces needed
        ("代购", "代 购", False),
        ("sale", "Big SALE today", True),  # case-insensitive
        ("sale", "wholesale prices", False),  # Latin words on word boundaries
        ("sale", "限时sale促销", True),  # a Latin word inside Chinese text
        ("vx", "加我vx领红包", True),
        ("vx", "vxlan config", False),
        ("free gift", "a Free Gift inside", True),
        ("刷单", "兼职刷单日结", True),
    ],
)
def test_words_match_latin_on_boundaries_and_chinese_as_substrings(
    word: str, text: str, hit: bool
) -> None:
    assert screen(text, [rule(word, RuleAction.FLAG)]).hit is hit


def test_patterns_mask_and_replace_rewrite_the_text_and_the_strongest_action_wins() -> None:
    rules = [
        rule(r"w[e3]chat\s*id", RuleAction.MASK, RuleKind.PATTERN),
        rule("傻", RuleAction.REPLACE, replacement="*"),
        rule("淘宝", RuleAction.FLAG),
    ]
    result = screen("加 WeChat ID 或 淘宝，傻瓜", rules)
    assert result.text == "加 ********* 或 淘宝，*瓜"
    assert result.action is RuleAction.FLAG
    assert result.words == (r"w[e3]chat\s*id", "傻", "淘宝")


def test_a_replacement_is_literal_text() -> None:
    assert (
        screen("bad word", [rule("bad", RuleAction.REPLACE, replacement=r"\1")]).text == r"\1 word"
    )


async def add_rule(content: Content, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await content.client.post("/v1/moderation/rules", json=body, headers=headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_blocked_words_refuse_the_write(content: Content) -> None:
    community = await content.community()
    await add_rule(content, OPERATOR, community_id=community, value="赌博", action="block")
    _, headers = await content.member_in(community)
    response = await content.client.post(
        "/v1/posts", json=article(community, body="线上赌博网站"), headers=headers
    )
    assert response.status_code == 422
    assert response.json()["words"] == ["赌博"]
    assert await content.events() == []


async def test_require_approval_holds_the_post_until_a_moderator_approves(content: Content) -> None:
    community = await content.community()
    _, moderator = await content.member_in(community, role="owner")
    await add_rule(
        content, moderator, community_id=community, value="代购", action="require_approval"
    )
    author, headers = await content.member_in(community)
    post = await content.post(headers, article(community, body="海外代购，正品保证"))
    assert post["status"] == "hidden"
    assert post["hidden_reason"] == "pending_approval"
    [alert] = await content.events("moderation.alerted")
    assert (alert.data["action"], alert.data["words"]) == ("require_approval", ["代购"])
    assert alert.data["author_id"] == author
    queue = (
        await content.client.get(
            f"/v1/moderation/queue?community_id={community}", headers=moderator
        )
    ).json()
    [case] = queue["items"]
    assert (case["target_id"], case["reason"]) == (post["id"], "pending_approval")
    _, fan = await content.member_in(community)
    assert (await content.client.get(f"/v1/posts/{post['id']}", headers=fan)).status_code == 404
    decided = await content.client.post(
        f"/v1/moderation/queue/{case['id']}/actions",
        json={"action": "approve", "reason": "genuine reseller"},
        headers=moderator,
    )
    assert decided.status_code == 201, decided.text
    assert (await content.get_post(post["id"], fan))["status"] == "published"
    assert len(await content.events("post.published")) == 1
    audit = (
        await content.client.get(
            f"/v1/moderation/actions?community_id={community}", headers=moderator
        )
    ).json()
    [entry] = audit["items"]
    assert (entry["action"], entry["reason"], entry["case_id"]) == (
        "approve",
        "genuine reseller",
        case["id"],
    )
    assert entry["actor_role"] == "member"
    again = await content.client.post(
        f"/v1/moderation/queue/{case['id']}/actions",
        json={"action": "approve", "reason": "twice"},
        headers=moderator,
    )
    assert again.status_code == 409


async def test_flag_publishes_but_queues_and_mask_rewrites(content: Content) -> None:
    community = await content.community()
    await add_rule(content, OPERATOR, community_id=community, value="淘宝", action="flag")
    await add_rule(content, OPERATOR, value="fuck", action="mask")  # a global rule
    _, headers = await content.member_in(community)
    post = await content.post(headers, article(community, body="淘宝 link, fuck yeah"))
    assert post["status"] == "published"
    assert post["body"] == "淘宝 link, **** yeah"
    [alert] = await content.events("moderation.alerted")
    assert alert.data["action"] == "flag"
    queue = (
        await content.client.get(f"/v1/moderation/queue?community_id={community}", headers=OPERATOR)
    ).json()
    assert [c["reason"] for c in queue["items"]] == ["flagged"]


async def test_a_held_comment_is_counted_only_when_approved(content: Content) -> None:
    community = await content.community()
    await add_rule(
        content,
        OPERATOR,
        community_id=community,
        value=r"\d{5,}",
        kind="pattern",
        action="require_approval",
    )
    _, headers = await content.member_in(community)
    post = await content.post(headers, article(community))
    comment = await content.client.post(
        f"/v1/posts/{post['id']}/comments", json={"body": "QQ群 123456789"}, headers=headers
    )
    assert comment.json()["status"] == "pending"
    [alert] = await content.events("moderation.alerted")
    assert (alert.data["comment_id"], alert.data["post_id"]) == (comment.json()["id"], post["id"])
    assert (await content.get_post(post["id"], headers))["counters"]["comments"] == 0
    assert await content.events("comment.created") == []
    moderator = auth(Role.MODERATOR, communities=frozenset({community}))
    decided = await content.client.post(
        "/v1/moderation/actions",
        json={"comment_id": comment.json()["id"], "action": "approve", "reason": "fan group"},
        headers=moderator,
    )
    assert decided.status_code == 201, decided.text
    assert (await content.get_post(post["id"], headers))["counters"]["comments"] == 1
    assert len(await content.events("comment.created")) == 1


async def test_an_invalid_pattern_is_422(content: Content) -> None:
    community = await content.community()
    response = await content.client.post(
        "/v1/moderation/rules",
        json={"community_id": community, "kind": "pattern", "value": "(unclosed", "action": "flag"},
        headers=OPERATOR,
    )
    assert response.status_code == 422


async def test_only_moderators_of_the_community_manage_its_rules_and_queue(
    content: Content,
) -> None:
    community = await content.community()
    _, member = await content.member_in(community)
    body = {"community_id": community, "value": "spam", "action": "flag"}
    assert (
        await content.client.post("/v1/moderation/rules", json=body, headers=member)
    ).status_code == 403
    elsewhere = auth(Role.MODERATOR, communities=frozenset({"another"}))
    assert (
        await content.client.post("/v1/moderation/rules", json=body, headers=elsewhere)
    ).status_code == 403
    staff = auth(Role.MODERATOR, communities=frozenset({community}))
    assert (
        await content.client.post("/v1/moderation/rules", json=body, headers=staff)
    ).status_code == 201
    global_rule = {"value": "spam", "action": "flag"}
    assert (
        await content.client.post("/v1/moderation/rules", json=global_rule, headers=staff)
    ).status_code == 403
    path = f"/v1/moderation/queue?community_id={community}"
    assert (await content.client.get(path, headers=member)).status_code == 403
    assert (await content.client.get("/v1/moderation/queue", headers=staff)).status_code == 403
    rules = (
        await content.client.get(f"/v1/moderation/rules?community_id={community}", headers=staff)
    ).json()
    [listed] = rules["items"]
    assert (
        await content.client.delete(f"/v1/moderation/rules/{listed['id']}", headers=member)
    ).status_code == 403
    assert (
        await content.client.delete(f"/v1/moderation/rules/{listed['id']}", headers=staff)
    ).status_code == 204


async def report(
    content: Content, post_id: str, headers: dict[str, str], reason: str = "ad_spam"
) -> dict[str, Any]:
    response = await content.client.post(
        f"/v1/posts/{post_id}/reports", json={"reason": reason}, headers=headers
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_reports_weighted_by_trust_auto_hide_at_the_threshold(content: Content) -> None:
    community = await content.community()
    _, headers = await content.member_in(community)
    post = await content.post(headers, article(community, body="cheap watches"))
    reporters = [(await content.member_in(community))[1] for _ in range(3)]
    first = await report(content, post["id"], reporters[0])
    assert first["weight"] == 1.0
    dup = await content.client.post(
        f"/v1/posts/{post['id']}/reports", json={"reason": "abuse"}, headers=reporters[0]
    )
    assert dup.status_code == 409
    await report(content, post["id"], reporters[1])
    assert (await content.get_post(post["id"], headers))["status"] == "published"
    await report(content, post["id"], reporters[2])  # 3.0 reaches the default threshold
    hidden = await content.get_post(post["id"], headers)
    assert (hidden["status"], hidden["hidden_reason"]) == ("hidden", "reports")
    assert hidden["counters"]["reports"] == 3
    [event] = await content.events("post.hidden")
    assert event.data["reason"] == "reports"
    assert len(await content.events("post.reported")) == 3
    queue = (
        await content.client.get(f"/v1/moderation/queue?community_id={community}", headers=OPERATOR)
    ).json()
    assert [c["reason"] for c in queue["items"]] == ["reported"]


async def test_upheld_reports_raise_trust_and_rejected_ones_lower_it(content: Content) -> None:
    community = await content.community()
    _, author = await content.member_in(community)
    _, good = await content.member_in(community)
    _, bad = await content.member_in(community)
    spam = await content.post(author, article(community, body="spam 1"))
    fine = await content.post(author, article(community, body="fine 1"))
    await report(content, spam["id"], good)
    await report(content, fine["id"], bad)
    for post_id, action in ((spam["id"], "reject"), (fine["id"], "approve")):
        response = await content.client.post(
            "/v1/moderation/actions",
            json={"post_id": post_id, "action": action, "reason": "checked"},
            headers=OPERATOR,
        )
        assert response.status_code == 201, response.text
    assert (await content.client.get(f"/v1/posts/{spam['id']}", headers=author)).json()[
        "status"
    ] == "removed"
    [removed] = await content.events("post.removed")
    assert removed.data["reason"] == "moderator"
    nxt = await content.post(author, article(community, body="another one"))
    assert (await report(content, nxt["id"], good))["weight"] == 1.5
    assert (await report(content, nxt["id"], bad))["weight"] == 0.5
    assert (await report(content, nxt["id"], OPERATOR))["weight"] == 3.0


async def test_threshold_is_per_community_and_restore_brings_a_post_back(content: Content) -> None:
    community = await content.community()
    settings = await content.client.put(
        f"/v1/moderation/communities/{community}/settings",
        json={"report_hide_threshold": 1.0},
        headers=OPERATOR,
    )
    assert settings.status_code == 200
    _, author = await content.member_in(community)
    _, reporter = await content.member_in(community)
    post = await content.post(author, article(community))
    await report(content, post["id"], reporter, reason="privacy")
    assert (await content.get_post(post["id"], author))["status"] == "hidden"
    restore = await content.client.post(
        "/v1/moderation/actions",
        json={"post_id": post["id"], "action": "restore", "reason": "no personal data in it"},
        headers=OPERATOR,
    )
    assert restore.status_code == 201
    assert (await content.get_post(post["id"], author))["status"] == "published"
    not_again = await content.client.post(
        "/v1/moderation/actions",
        json={"post_id": post["id"], "action": "restore", "reason": "again"},
        headers=OPERATOR,
    )
    assert not_again.status_code == 409
    hide = await content.client.post(
        "/v1/moderation/actions",
        json={"post_id": post["id"], "action": "hide", "reason": "off topic"},
        headers=OPERATOR,
    )
    assert hide.status_code == 201
    actions = (
        await content.client.get(
            f"/v1/moderation/actions?community_id={community}", headers=OPERATOR
        )
    ).json()
    assert [a["action"] for a in actions["items"]] == ["hide", "restore"]  # newest first


async def test_link_heavy_posts_from_newcomers_wait_for_approval(content: Content) -> None:
    community = await content.community()
    newcomer = str(uuid.uuid4())  # joined just now, unlike the fixtures' members
    await deliver(
        content.runtime,
        MemberJoinedCommunity(
            community_id=community, member_id=newcomer, role="member", joined_at=datetime.now(UTC)
        ),
    )
    links = " ".join(f"https://shop{n}.example.com" for n in range(4))
    post = await content.post(auth(Role.MEMBER, newcomer), article(community, body=links))
    assert (post["status"], post["hidden_reason"]) == ("hidden", "pending_approval")
    _, veteran = await content.member_in(community)
    assert (await content.post(veteran, article(community, body=links)))["status"] == "published"
