"""Referrals: invite codes, one referrer, no self-referral, a daily cap, the invite tree."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from services.members.service import INVITE_ALPHABET, INVITE_CODE_LENGTH, stamp_activity
from tests.members.conftest import OPERATOR, as_member, outbox_events, register, runtime_of


async def test_registering_with_a_code_records_who_invited_whom(
    members: httpx.AsyncClient,
) -> None:
    alice = await register(members)
    code = alice["invite_code"]
    assert len(code) == INVITE_CODE_LENGTH
    assert set(code) <= set(INVITE_ALPHABET)
    bob = await register(members, invite_code=code.lower())
    assert bob["referrer_id"] == alice["id"]
    [event] = await outbox_events(members, "member.referred")
    assert (event.data["member_id"], event.data["referrer_id"]) == (bob["id"], alice["id"])


async def test_invite_codes_are_distinct(members: httpx.AsyncClient) -> None:
    codes = {(await register(members))["invite_code"] for _ in range(30)}
    assert len(codes) == 30


async def test_the_daily_cap_refuses_the_next_invitee(members: httpx.AsyncClient) -> None:
    alice = await register(members)  # the test settings cap referrals at 3 a day
    for _ in range(3):
        await register(members, invite_code=alice["invite_code"])
    over = await members.post(
        "/v1/members",
        json={"nickname": "late", "invite_code": alice["invite_code"]},
    )
    assert over.status_code == 409
    assert over.json()["type"].endswith("/referral-cap-reached")
    assert len(await outbox_events(members, "member.referred")) == 3
    assert len(await outbox_events(members, "member.registered")) == 4


async def test_a_code_can_be_added_later_once_and_never_ones_own(
    members: httpx.AsyncClient,
) -> None:
    alice, bob, carol = await register(members), await register(members), await register(members)
    path = f"/v1/members/{bob['id']}/referrer"
    own = await members.post(path, json={"invite_code": bob["invite_code"]}, headers=as_member(bob))
    assert own.status_code == 422
    assert own.json()["errors"][0]["field"] == "body.invite_code"
    ok = await members.post(
        path, json={"invite_code": alice["invite_code"]}, headers=as_member(bob)
    )
    assert ok.status_code == 200
    assert ok.json()["referrer_id"] == alice["id"]
    twice = await members.post(
        path, json={"invite_code": carol["invite_code"]}, headers=as_member(bob)
    )
    assert twice.status_code == 409
    # Alice cannot then claim Bob as her own referrer: no invite loops.
    loop = await members.post(
        f"/v1/members/{alice['id']}/referrer",
        json={"invite_code": bob["invite_code"]},
        headers=as_member(alice),
    )
    assert loop.status_code == 422


async def test_the_invite_tree_counts_direct_activated_and_descendants(
    members: httpx.AsyncClient,
) -> None:
    root = await register(members)
    kids = [await register(members, invite_code=root["invite_code"]) for _ in range(3)]
    grandkid = await register(members, invite_code=kids[0]["invite_code"])
    await register(members, invite_code=grandkid["invite_code"])
    async with runtime_of(members).db.session() as session:
        await stamp_activity(session, kids[1]["id"], datetime.now(UTC), "comment.created")
        await stamp_activity(session, kids[1]["id"], datetime.now(UTC), "post.published")
    tree = await members.get(f"/v1/members/{root['id']}/referrals", headers=as_member(root))
    body = tree.json()
    assert (body["invited"], body["activated"], body["descendants"]) == (3, 1, 5)
    assert sorted(i["member_id"] for i in body["invitees"]) == sorted(k["id"] for k in kids)
    [activated] = await outbox_events(members, "member.referral_activated")
    assert activated.data == {
        **activated.data,
        "member_id": kids[1]["id"],
        "referrer_id": root["id"],
        "activated_by": "comment.created",
    }
    others = await members.get(f"/v1/members/{root['id']}/referrals", headers=as_member(kids[0]))
    assert others.status_code == 403
    assert (
        await members.get(f"/v1/members/{root['id']}/referrals", headers=OPERATOR)
    ).status_code == 200
