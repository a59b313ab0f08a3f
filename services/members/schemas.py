from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import phonenumbers
from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    UrlConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from services.members.segments import Rule, depth
from services.members.taxonomy import INTERESTS, AgeBand, Channel, Gender, age_band, is_country
from services.members.taxonomy import is_subdivision_of as _subdivision_of
from shared.auth import Role


def _this_year() -> int:
    return datetime.now(UTC).year


def _birth_year(value: int | None) -> int | None:
    if value is not None and value > _this_year():
        raise ValueError("birth year is in the future")
    return value


def _country(value: str | None) -> str | None:
    if value is not None and not is_country(value):
        raise ValueError(f"{value} is not an ISO 3166-1 alpha-2 country code")
    return value


def _interests(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    unknown = sorted(set(values) - INTERESTS)
    if unknown:
        raise ValueError(f"unknown interests: {', '.join(unknown)}")
    return sorted(set(values))


def normalise_phone(raw: str, country: str | None) -> str:
    """E.164 form of a phone number; numbers without ``+`` are read in ``country`` (CN default)."""
    try:
        number = phonenumbers.parse(raw, country or "CN")
    except phonenumbers.NumberParseException:
        raise ValueError("not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


BirthYear = Annotated[int, Field(ge=1900), AfterValidator(_birth_year)]
CountryCode = Annotated[str, Field(pattern=r"^[A-Z]{2}$"), AfterValidator(_country)]
Interests = Annotated[list[str], Field(max_length=20), AfterValidator(_interests)]
Nickname = Annotated[str, Field(min_length=1, max_length=64)]
# The column holds 500; normalising may append a "/", so the input stops one short.
Url = Annotated[
    AnyHttpUrl,
    UrlConstraints(max_length=499),
    Field(json_schema_extra={"pattern": "^[Hh][Tt][Tt][Pp][Ss]?://"}),
]
Password = Annotated[str, Field(min_length=8, max_length=128)]
Phone = Annotated[str, Field(min_length=5, max_length=32)]
InviteCode = Annotated[str, Field(min_length=4, max_length=16, pattern=r"^[A-Za-z0-9]+$")]


class _Profile(BaseModel):
    """Fields a member may set at registration and change later; every one optional here."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    avatar_url: Url | None = None
    gender: Gender | None = None
    birth_year: BirthYear | None = None
    country: CountryCode | None = None
    province: str | None = Field(None, max_length=8, description="ISO 3166-2 code, e.g. CN-SH.")
    city: str | None = Field(None, min_length=1, max_length=64)
    email: EmailStr | None = Field(None, max_length=254)
    phone: Phone | None = Field(None, description="E.164 (+8613812345678) or national format.")

    @field_validator("province")
    @classmethod
    def _province_of_country(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        country = info.data.get("country")
        if country is None:
            raise ValueError("a province needs a country")
        if not _subdivision_of(value, country):
            raise ValueError(f"{value} is not an ISO 3166-2 subdivision of {country}")
        return value

    @field_validator("phone")
    @classmethod
    def _phone_in_e164(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else normalise_phone(value, info.data.get("country"))

    @field_validator("email")
    @classmethod
    def _email_lower_case(cls, value: str | None) -> str | None:
        return None if value is None else value.lower()


class MemberCreate(_Profile):
    nickname: Nickname
    channel: Channel = Channel.APP
    interests: Interests = Field(default_factory=list)
    password: Password | None = Field(
        None, description="Lets the member sign in at POST /v1/auth/token with e-mail or phone."
    )
    marketing_consent: bool = False
    consent_source: str = Field("registration", min_length=1, max_length=32)
    invite_code: InviteCode | None = Field(None, description="Another member's invite code.")

    @model_validator(mode="after")
    def _password_needs_a_login(self) -> MemberCreate:
        if self.password is not None and self.email is None and self.phone is None:
            raise ValueError("a password needs an e-mail or phone to sign in with")
        return self


class MemberUpdate(_Profile):
    """Only the fields sent change; ``null`` clears an optional field (interests to none)."""

    nickname: Nickname | None = None
    interests: Interests | None = None
    password: Password | None = None
    marketing_consent: bool | None = None
    consent_source: str = Field("profile", min_length=1, max_length=32)

    @field_validator("nickname", "password", "marketing_consent", mode="before")
    @classmethod
    def _not_clearable(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("cannot be cleared; leave it out to keep it")
        return value


class MemberCard(BaseModel):
    """What anyone allowed to see a member sees: no contact details."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    nickname: str
    avatar_url: str | None
    gender: str | None
    age_band: AgeBand | None
    country: str | None
    province: str | None
    city: str | None
    interests: list[str]
    channel: Channel
    tier: str | None
    tier_name: str | None
    points_balance: int
    last_active_at: datetime | None
    created_at: datetime

    @model_validator(mode="before")
    @classmethod
    def _derive_age_band(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            value = {
                name: getattr(value, name)
                for name in cls.model_fields
                if name != "age_band" and hasattr(value, name)
            } | {"birth_year": getattr(value, "birth_year", None)}
        if "age_band" not in value:
            value["age_band"] = age_band(value.get("birth_year"), _this_year())
        return value


class MemberPrivateRead(MemberCard):
    """A member as the member itself and operators see them."""

    birth_year: int | None
    email: str | None
    phone: str | None
    marketing_consent: bool
    consent_at: datetime | None
    consent_source: str | None
    invite_code: str | None
    referrer_id: str | None
    has_password: bool


class MemberPage(BaseModel):
    items: list[MemberCard]
    next_cursor: str | None


class MemberExport(BaseModel):
    """Everything the platform's members service holds about a member (data portability)."""

    exported_at: datetime
    profile: MemberPrivateRead
    communities: list[MembershipRead]
    invitees: list[str] = Field(description="Ids of members this member invited.")


class Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    username: str = Field(min_length=3, max_length=254, description="E-mail or phone.")
    password: str = Field(min_length=1, max_length=128)


class AuthenticatedMember(BaseModel):
    member_id: str
    nickname: str
    role: Role = Role.MEMBER
    moderates: list[str] = Field(description="Communities where the member is owner or moderator.")


class ReferrerClaim(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    invite_code: InviteCode


class InviteeRead(BaseModel):
    member_id: str
    nickname: str
    referred_at: datetime | None
    activated_at: datetime | None


class ReferralTree(BaseModel):
    member_id: str
    invite_code: str | None
    referrer_id: str | None
    invited: int = Field(description="Direct invitees.")
    activated: int = Field(description="Direct invitees whose referral was activated.")
    descendants: int = Field(description="Everyone brought in down the tree, at any depth.")
    invitees: list[InviteeRead]
    next_cursor: str | None


# --- communities ------------------------------------------------------------------------------


class Visibility(StrEnum):
    PUBLIC = "public"
    INVITE_ONLY = "invite_only"


class CommunityRole(StrEnum):
    OWNER = "owner"
    MODERATOR = "moderator"
    MEMBER = "member"


def _timezone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value} is not an IANA time zone") from None
    return value


class CommunityCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=2, max_length=80)
    logo_url: Url | None = None
    theme: str | None = Field(None, max_length=32, description="Colour or theme name.")
    description: str = Field("", max_length=4000)
    rules: str = Field("", max_length=10000, description="Community rules, shown to members.")
    visibility: Visibility = Visibility.PUBLIC
    timezone: Annotated[str, Field(max_length=64), AfterValidator(_timezone)] = "Asia/Shanghai"
    owner_id: str | None = Field(None, description="Operators choose the owner; members own it.")


class CommunityUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(None, min_length=2, max_length=80)
    logo_url: Url | None = None
    theme: str | None = Field(None, max_length=32)
    description: str | None = Field(None, max_length=4000)
    rules: str | None = Field(None, max_length=10000)
    visibility: Visibility | None = None


class CommunityRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    logo_url: str | None
    theme: str | None
    description: str
    rules: str
    visibility: Visibility
    timezone: str
    owner_id: str
    member_count: int
    created_at: datetime


class CommunityStaffRead(CommunityRead):
    """Owners, moderators and operators also see the invite code of an invite-only community."""

    invite_code: str


class CommunityPage(BaseModel):
    items: list[CommunityRead]
    next_cursor: str | None


class MembershipCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    member_id: str | None = Field(None, description="Defaults to the caller; staff add others.")
    invite_code: InviteCode | None = Field(None, description="Needed to join invite-only groups.")


class MembershipUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: CommunityRole


class MembershipRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    community_id: str
    member_id: str
    role: CommunityRole
    joined_at: datetime


class MembershipPage(BaseModel):
    items: list[MembershipRead]
    next_cursor: str | None


# --- segments ---------------------------------------------------------------------------------


def _shallow(rule: Rule) -> Rule:
    from services.members.segments import MAX_DEPTH

    if depth(rule) > MAX_DEPTH:
        raise ValueError(f"rules nest deeper than {MAX_DEPTH} levels")
    return rule


SegmentRules = Annotated[Rule, AfterValidator(_shallow)]


class SegmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=80)
    description: str = Field("", max_length=2000)
    rules: SegmentRules


class SegmentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(None, min_length=1, max_length=80)
    description: str | None = Field(None, max_length=2000)
    rules: SegmentRules | None = None


class SegmentPreview(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: SegmentRules


class SegmentCount(BaseModel):
    count: int
    evaluated_at: datetime


class SegmentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    description: str
    rules: dict[str, Any]
    created_by: str
    created_at: datetime
    updated_at: datetime


class SegmentPage(BaseModel):
    items: list[SegmentRead]
    next_cursor: str | None
