from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.events.registry import REGISTRY

# ``members:read``, ``webhooks:*``, ``*``, or event types: ``events:member.*``, ``events:*``.
Scope = Annotated[
    str,
    Field(
        pattern=(
            r"^(\*|[a-z][a-z_-]*:(\*|read|write)"
            r"|events:([a-z][a-z_]*\.(\*|[a-z][a-z_]*)))$"
        ),
        max_length=64,
    ),
]


def _names_registered_events(scope: str) -> bool:
    pattern = scope.removeprefix("events:")
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return any(name.startswith(pattern[:-1]) for name in REGISTRY)
    return pattern in REGISTRY


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 (the OAuth2 token type, not a secret)
    expires_in: int = Field(description="Seconds until the token expires.")


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=100)
    scopes: list[Scope] = Field(
        min_length=1,
        max_length=50,
        description=(
            "Scopes such as `members:read`, `metrics:read`, `webhooks:write`, `webhooks:*`; "
            "event types a partner may subscribe to: `events:member.*`, "
            "`events:post.published`, `events:*`."
        ),
    )

    @field_validator("scopes")
    @classmethod
    def _event_scopes_name_real_events(cls, scopes: list[str]) -> list[str]:
        for scope in scopes:
            if scope.startswith("events:") and not _names_registered_events(scope):
                raise ValueError(f"{scope!r} names no registered event type")
        return scopes


class ApiKeyRotate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overlap_s: int = Field(
        3600,
        ge=0,
        le=7 * 86400,
        description="Seconds the replaced key keeps working, so callers can switch over.",
    )


class ApiKeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    prefix: str
    scopes: list[str]
    created_by: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    rotated_at: datetime | None = None
    previous_expires_at: datetime | None = Field(
        None, description="Until when the key replaced by the last rotation is accepted."
    )


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="The key itself. Shown once; only its hash is stored.")


class ApiKeyPage(BaseModel):
    items: list[ApiKeyRead]
