from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Scope = Annotated[str, Field(pattern=r"^(\*|[a-z][a-z_-]*:(\*|read|write))$", max_length=64)]


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
        description="Scopes such as `members:read`, `metrics:read`, `webhooks:*`.",
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


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="The key itself. Shown once; only its hash is stored.")


class ApiKeyPage(BaseModel):
    items: list[ApiKeyRead]
