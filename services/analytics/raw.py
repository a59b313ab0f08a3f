"""The raw event store's rows: which members an event names, and how erasure scrubs them.

Every consumed event is kept once (``raw_events``) so the rollups can be rebuilt after a
definition change. Erasure must leave no personal data there either: the member's ids
become the key their rollups carry (``erased-…``) and the personal fields of events they
made are blanked to what the contract allows, so a scrubbed event still validates and
replays to the same counts.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from pydantic.fields import FieldInfo

from services.analytics.models import ERASED_PREFIX
from shared.consumer import ConsumedEvent
from shared.events.envelope import CloudEvent
from shared.events.registry import lookup

# Events that arrive after their member was erased are stored under this one key: the
# rollups drop their per-member rows anyway (counts only), and no id can link them.
ERASED_LATER = ERASED_PREFIX + "later"

# The member who did it, in the order looked for; then the other member an event names.
ACTOR_FIELDS = ("member_id", "author_id", "voter_id", "owner_id", "created_by")
RELATED_FIELDS = ("post_author_id", "entry_author_id", "referrer_id")
MEMBER_FIELDS = ACTOR_FIELDS + RELATED_FIELDS
# Blanked in the events an erased member made (the actor's own profile and words).
PERSONAL_FIELDS = frozenset(
    {
        "nickname",
        "real_name",
        "email",
        "phone",
        "mobile",
        "address",
        "region",
        "country",
        "province",
        "city",
        "gender",
        "age_band",
        "birth_date",
        "interests",
        "avatar_url",
        "bio",
        "title",
        "body",
        "text",
        "message",
        "note",
        "contact",
    }
)


@dataclass(frozen=True)
class Shape:
    actor: str | None
    related: str | None
    blanks: dict[str, Any]


def _blank(info: FieldInfo) -> Any:
    if not info.is_required():
        return info.get_default(call_default_factory=True)
    origin = typing.get_origin(info.annotation) or info.annotation
    if origin is list:
        return []
    return "" if info.annotation is str else None


@functools.cache
def shape_of(event_type: str) -> Shape:
    fields = lookup(event_type).model.model_fields
    return Shape(
        actor=next((name for name in ACTOR_FIELDS if name in fields), None),
        related=next((name for name in RELATED_FIELDS if name in fields), None),
        blanks={name: _blank(info) for name, info in fields.items() if name in PERSONAL_FIELDS},
    )


def _id(data: Mapping[str, Any], name: str | None) -> str | None:
    value = data.get(name) if name else None
    return value if isinstance(value, str) else None


# A raw_events row as the buffer keeps it (``received_at`` is set when written).
RAW_COLUMNS = ("event_id", "type", "source", "subject", "time", "data", "member_id", "related_id")
RAW_MEMBER: Final = 6
RAW_RELATED: Final = 7
assert RAW_COLUMNS[RAW_MEMBER] == "member_id"
assert RAW_COLUMNS[RAW_RELATED] == "related_id"
RawRow = tuple[str, str, str, str | None, datetime, dict[str, Any], str | None, str | None]


def row_of(event: ConsumedEvent) -> RawRow:
    """The ``raw_events`` row of a consumed event, in ``RAW_COLUMNS`` order."""
    envelope = event.envelope
    shape = shape_of(envelope.type)
    at, data = envelope.time, envelope.data
    return (
        envelope.id,
        envelope.type,
        envelope.source,
        envelope.subject,
        at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC),
        data,
        _id(data, shape.actor),
        _id(data, shape.related),
    )


def scrubbed(row: RawRow, keys: Mapping[str, str]) -> RawRow:
    """``scrub`` for a row kept as a tuple."""
    done = scrub(dict(zip(RAW_COLUMNS, row, strict=True)), keys)
    return typing.cast(RawRow, tuple(done[name] for name in RAW_COLUMNS))


def scrub(row: Mapping[str, Any], keys: Mapping[str, str]) -> dict[str, Any]:
    """``row`` with each id in ``keys`` replaced by its key, and personal fields blanked
    when the event's actor is one of them."""
    data = dict(row["data"])
    for name in MEMBER_FIELDS:
        value = data.get(name)
        if isinstance(value, str) and value in keys:
            data[name] = keys[value]
    if row["member_id"] in keys:
        data.update(shape_of(row["type"]).blanks)
    subject = row["subject"]
    return {
        **row,
        "data": data,
        "subject": keys.get(subject, subject) if subject is not None else None,
        "member_id": keys.get(row["member_id"], row["member_id"]) if row["member_id"] else None,
        "related_id": keys.get(row["related_id"], row["related_id"]) if row["related_id"] else None,
    }


def replayed(
    event_id: str,
    type_: str,
    source: str,
    subject: str | None,
    time: datetime,
    data: dict[str, Any],
) -> ConsumedEvent:
    """A stored event as the consumer hands it to a handler (data parsed by its contract)."""
    envelope = CloudEvent(
        id=event_id, source=source, type=type_, subject=subject, time=time, data=data
    )
    spec = lookup(type_)
    return ConsumedEvent(envelope, spec.model.model_validate(data), spec.topic.name, 0, 0)
