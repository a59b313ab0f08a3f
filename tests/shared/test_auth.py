"""Token verification: remembered briefly for speed, never past the token's own expiry."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import jwt
import pytest

from shared.auth import ALGORITHM, Principal, Role, TokenCodec
from shared.errors import Unauthorized

SECRET = "a-test-secret-that-is-long-enough-for-hs256"


def test_a_verified_token_gives_the_same_principal_again() -> None:
    codec = TokenCodec(SECRET)
    principal = Principal("m-1", Role.MEMBER, name="Ann", communities=frozenset({"c-1"}))
    token = codec.issue(principal)
    assert codec.verify(token) == principal
    assert codec.verify(token) == principal


async def test_a_remembered_token_still_expires_on_time() -> None:
    codec = TokenCodec(SECRET)
    token = codec.issue(Principal("m-1", Role.MEMBER), ttl=timedelta(seconds=1))
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    assert codec.verify(token).subject == "m-1"
    await asyncio.sleep(max(0.0, exp - time.time()) + 0.05)
    with pytest.raises(Unauthorized, match="expired"):
        codec.verify(token)


def test_a_token_signed_with_another_key_is_refused_after_a_good_one() -> None:
    codec = TokenCodec(SECRET)
    good = codec.issue(Principal("m-1", Role.OPERATOR))
    claims = jwt.decode(good, SECRET, algorithms=[ALGORITHM], options={"verify_aud": False})
    forged = jwt.encode(claims, "another-secret-that-is-long-enough-too", algorithm=ALGORITHM)
    assert codec.verify(good).role is Role.OPERATOR
    with pytest.raises(Unauthorized):
        codec.verify(forged)


def test_tokens_of_another_codec_secret_are_not_shared() -> None:
    ours, theirs = TokenCodec(SECRET), TokenCodec("a-different-secret-that-is-long-enough")
    token = theirs.issue(Principal("p-1", Role.PARTNER))
    assert theirs.verify(token).subject == "p-1"
    with pytest.raises(Unauthorized):
        ours.verify(token)
