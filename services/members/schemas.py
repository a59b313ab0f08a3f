from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, EmailStr, Field


class Channel(StrEnum):
    APP = "app"
    WEB = "web"
    WECHAT = "wechat"
    WEIBO = "weibo"
    DOUYIN = "douyin"
    ZHIHU = "zhihu"
    OFFLINE = "offline"
    PARTNER = "partner"


class MemberCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    nickname: str = Field(min_length=1, max_length=64)
    channel: Channel = Channel.APP
    region: str | None = Field(None, max_length=120)
    email: EmailStr | None = None
    phone: str | None = Field(None, pattern=r"^\+?[0-9][0-9 -]{5,30}$")


class MemberRead(BaseModel):
    """A member as others may see them: no contact details."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    nickname: str
    channel: Channel
    region: str | None
    created_at: datetime


class MemberPrivateRead(MemberRead):
    """A member as the member itself and operators see them."""

    email: str | None
    phone: str | None
