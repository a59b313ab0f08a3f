"""Cursor pagination: an opaque cursor carries the sort key of the last item returned.

Keyset pages stay fast at any depth and never skip or repeat rows when new ones
arrive, unlike offsets.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated

from fastapi import Query

from shared.errors import Unprocessable

Limit = Annotated[int, Query(ge=1, le=200, description="Items per page.")]
Cursor = Annotated[
    str | None, Query(max_length=500, description="next_cursor from the previous page.")
]


class BadCursor(Unprocessable):
    code, title = "bad-cursor", "Invalid cursor"


def encode_cursor(*key: str | int) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[str | int]:
    """The sort key inside ``cursor``; a tampered or foreign cursor is a 422, not a 500."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadCursor("The cursor is not one this API issued") from None
    if (
        not isinstance(key, list)
        or len(key) != size
        or not all(isinstance(k, str | int) for k in key)
    ):
        raise BadCursor("The cursor is not one this API issued")
    return key
