"""Masking of personal data in post and comment text, applied on write.

Privacy design: the original text is never stored. Readers, authors and
moderators all see the masked text, so there is no privacy scope to guard and
no way for a leaked database to hand out the numbers. Masks keep a little of
the value (``138****5678``, ``a***@example.com``) so a reader still sees that
contact details were shared.

Pure functions only: no I/O, no database, deterministic.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

# Order matters: e-mail first (QQ-style addresses start with digits), then ID
# numbers (18 digits would otherwise look like a phone number with digits around).
EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
PRC_ID = re.compile(r"(?<![0-9A-Za-z])[1-9]\d{16}[0-9Xx](?![0-9A-Za-z])")
CN_MOBILE = re.compile(
    r"(?<![\d+])(?:(?:\+|00)86[\s-]?)?(1[3-9]\d)[\s-]?(\d{4})[\s-]?(\d{4})(?!\d)"
)
# "+CC" then digit groups separated by a space, dash, dot or parentheses.
INTERNATIONAL = re.compile(r"(?<![\w+])\+[1-9][\d\s().-]{6,22}\d(?!\d)")

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK_CHARS = "10X98765432"


@dataclass(frozen=True)
class Masked:
    text: str
    kinds: frozenset[str]

    @property
    def changed(self) -> bool:
        return bool(self.kinds)


def prc_id_checksum_ok(value: str) -> bool:
    """GB 11643-1999: weighted sum of the first 17 digits mod 11 picks the check character."""
    if len(value) != 18 or not value[:17].isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(value[:17], ID_WEIGHTS, strict=True))
    return ID_CHECK_CHARS[total % 11] == value[17].upper()


def _mask_email(match: re.Match[str]) -> str | None:
    local, _, domain = match.group(0).partition("@")
    return f"{local[0]}***@{domain}"


def _mask_prc_id(match: re.Match[str]) -> str | None:
    value = match.group(0)
    if not prc_id_checksum_ok(value):
        return None  # a long number that is not an ID: order numbers, tracking codes
    return f"{value[:6]}********{value[-4:]}"


def _mask_cn_mobile(match: re.Match[str]) -> str | None:
    return f"{match.group(1)}****{match.group(3)}"


def _mask_international(match: re.Match[str]) -> str | None:
    value = match.group(0)
    digits = re.sub(r"\D", "", value)
    if not 8 <= len(digits) <= 15:  # E.164 allows at most 15 digits
        return None
    return f"+{digits[:2]}{'*' * (len(digits) - 4)}{digits[-2:]}"


Rule = tuple[str, re.Pattern[str], Callable[[re.Match[str]], str | None]]

RULES: tuple[Rule, ...] = (
    ("email", EMAIL, _mask_email),
    ("national_id", PRC_ID, _mask_prc_id),
    ("phone", CN_MOBILE, _mask_cn_mobile),
    ("phone", INTERNATIONAL, _mask_international),
)


def mask_pii(text: str) -> Masked:
    """Mask e-mail addresses, PRC ID numbers and phone numbers in ``text``."""
    kinds: set[str] = set()
    for kind, pattern, mask in RULES:

        def replace(
            match: re.Match[str], kind: str = kind, mask: Callable[..., str | None] = mask
        ) -> str:
            masked = mask(match)
            if masked is None:
                return match.group(0)
            kinds.add(kind)
            return masked

        text = pattern.sub(replace, text)
    return Masked(text, frozenset(kinds))


def mask_optional(text: str | None) -> str | None:
    return None if text is None else mask_pii(text).text
