"""Keyset cursors over ``(created_at, id)``, newest first."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute

from shared.errors import Unprocessable


class InvalidCursor(Unprocessable):
    code, title = "invalid-cursor", "Invalid cursor"


def encode_cursor(created_at: datetime, id_: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{id_}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor.encode()).decode()
        stamp, id_ = raw.split("|", 1)
        return datetime.fromisoformat(stamp), id_
    except (ValueError, UnicodeDecodeError):
        raise InvalidCursor("The cursor is not one this service handed out") from None


def page(
    stmt: Select[Any],
    created_at: InstrumentedAttribute[datetime],
    id_: InstrumentedAttribute[str],
    cursor: str | None,
    limit: int,
) -> Select[Any]:
    if cursor:
        stamp, last_id = decode_cursor(cursor)
        stmt = stmt.where(or_(created_at < stamp, and_(created_at == stamp, id_ < last_id)))
    return stmt.order_by(created_at.desc(), id_.desc()).limit(limit + 1)
