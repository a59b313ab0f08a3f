"""PII masking on real-looking Chinese and English samples, positives and negatives."""
# ruff: noqa: RUF001 - real Chinese text uses full-width punctuation

from __future__ import annotations

import pytest

from services.content.masking import mask_pii, prc_id_checksum_ok

MASKED = [
    # mainland mobile numbers, every common spelling
    ("有问题打我电话13812345678谢谢", "有问题打我电话138****5678谢谢", "phone"),
    ("手机：138 1234 5678", "手机：138****5678", "phone"),
    ("call 139-8765-4321 after 6pm", "call 139****4321 after 6pm", "phone"),
    ("微信同号+86 186 0000 1111", "微信同号186****1111", "phone"),
    ("+8615912345678", "159****5678", "phone"),
    ("0086 13712345678", "137****5678", "phone"),
    # international formats
    ("Ring me on +1 (415) 555-2671", "Ring me on +14*******71", "phone"),
    ("UK office +44 20 7946 0958.", "UK office +44********58.", "phone"),
    ("Berlin: +49 30 901820", "Berlin: +49******20", "phone"),
    # e-mail addresses, including QQ numbers as the local part
    ("发邮件到 zhang.wei@example.com 咨询", "发邮件到 z***@example.com 咨询", "email"),
    ("mail 12345678@qq.com", "mail 1***@qq.com", "email"),
    ("Contact: Jane_Doe+fans@mail.brand.co.uk", "Contact: J***@mail.brand.co.uk", "email"),
    # PRC national ID numbers with a valid checksum
    ("身份证号11010519491231002X请保密", "身份证号110105********002X请保密", "national_id"),
    ("ID 440524188001010014.", "ID 440524********0014.", "national_id"),
    ("id 11010519491231002x", "id 110105********002x", "national_id"),
]

UNTOUCHED = [
    "订单号123456789012345678",  # 18 digits, checksum wrong: an order number
    "ID 110105194912310021",  # one digit off the valid ID above
    "价格 12345678901 元",  # 11 digits but 12x is no mobile prefix
    "编号 10012345678",  # 100 is not a mobile prefix
    "138123456789",  # 12 digits: not a phone number
    "call 1234-5678",  # a local landline, no country code
    "version 2.10.3 released 2024-05-01",
    "比分 3:2，第 90+4 分钟",
    "email me at support@ (no domain)",
    "user@localhost",
    "+12 is a score, not a phone",
    "tracking 1Z999AA10123456784",
]


@pytest.mark.parametrize(("text", "expected", "kind"), MASKED)
def test_personal_data_is_masked(text: str, expected: str, kind: str) -> None:
    masked = mask_pii(text)
    assert masked.text == expected
    assert masked.kinds == {kind}


@pytest.mark.parametrize("text", UNTOUCHED)
def test_numbers_that_are_not_personal_data_are_left_alone(text: str) -> None:
    masked = mask_pii(text)
    assert masked.text == text
    assert not masked.changed


def test_several_kinds_in_one_text_are_all_masked() -> None:
    masked = mask_pii("加我 13812345678 或 a.b@c.com，身份证 11010519491231002X")
    assert masked.text == "加我 138****5678 或 a***@c.com，身份证 110105********002X"
    assert masked.kinds == {"phone", "email", "national_id"}


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("11010519491231002X", True),
        ("440524188001010014", True),
        ("11010519491231002Y", False),
        ("440524188001010015", False),
        ("44052418800101001", False),
        ("4405241880010100AA", False),
    ],
)
def test_id_checksum(value: str, valid: bool) -> None:
    assert prc_id_checksum_ok(value) is valid


def test_masking_is_idempotent() -> None:
    once = mask_pii("电话 13812345678 邮箱 x@y.cn").text
    assert mask_pii(once).text == once
