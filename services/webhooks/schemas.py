from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.events.registry import REGISTRY

EventPattern = Annotated[str, Field(min_length=1, max_length=200)]


def pattern_matches(pattern: str, event_type: str) -> bool:
    """``*`` matches every type, ``member.*`` every ``member.<verb>``, else an exact name."""
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type


def _known(pattern: str) -> bool:
    if pattern != "*" and "*" in pattern[:-1]:
        return False
    return any(pattern_matches(pattern, name) for name in REGISTRY)


def _check_patterns(patterns: list[str] | None) -> list[str] | None:
    if patterns is None:
        return None
    unknown = [p for p in patterns if not _known(p)]
    if unknown:
        raise ValueError(f"no registered event type matches {', '.join(map(repr, unknown))}")
    return sorted(set(patterns))


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    url: str = Field(min_length=1, max_length=2000, examples=["https://crm.example.com/hooks"])
    event_types: list[EventPattern] = Field(
        min_length=1,
        max_length=100,
        description="Event types, or wildcards: `member.*`, `*`.",
        examples=[["member.*", "post.published"]],
    )
    community_id: str | None = Field(
        None,
        max_length=36,
        description="Only events about this community (`data.community_id`); none: all events.",
    )
    description: str = Field("", max_length=500)
    enabled: bool = Field(True, strict=True)

    _patterns = field_validator("event_types")(_check_patterns)


class EndpointUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    url: str | None = Field(None, min_length=1, max_length=2000)
    event_types: list[EventPattern] | None = Field(None, min_length=1, max_length=100)
    community_id: str | None = Field(None, max_length=36)
    description: str | None = Field(None, max_length=500)
    enabled: bool | None = Field(
        None, strict=True, description="Re-enabling clears the failure history."
    )

    _patterns = field_validator("event_types")(_check_patterns)


class EndpointRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    owner: str
    url: str
    description: str
    event_types: list[str]
    community_id: str | None
    enabled: bool
    disabled_reason: str | None
    disabled_at: datetime | None
    failing_since: datetime | None
    previous_secret_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


class EndpointWithSecret(EndpointRead):
    secret: str = Field(
        description="`whsec_` + base64 key for verifying signatures. Shown on create and rotate."
    )


class EndpointPage(BaseModel):
    items: list[EndpointRead]
    next_cursor: str | None


class SecretRotate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overlap_s: int = Field(
        86400,
        ge=0,
        le=7 * 86400,
        description="Seconds both the old and the new secret sign each delivery.",
    )


class ReplayRange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: datetime = Field(description="Replay failed deliveries recorded at or after this.")
    until: datetime | None = Field(None, description="... and before this (default: now).")


class ReplayResult(BaseModel):
    replayed: int


class AttemptRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    attempted_at: datetime
    success: bool
    status_code: int | None
    latency_ms: int
    response_snippet: str | None
    error: str | None


class DeliveryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    endpoint_id: str
    event_id: str = Field(description="Also the `webhook-id` header: stable across retries.")
    event_type: str
    status: str = Field(description="pending, succeeded, failed (retries exhausted) or dropped.")
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    last_attempt_at: datetime | None
    delivered_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    payload_purged: bool = False


class DeliveryDetail(DeliveryRead):
    attempts_log: list[AttemptRead]


class DeliveryPage(BaseModel):
    items: list[DeliveryRead]
    next_cursor: str | None
