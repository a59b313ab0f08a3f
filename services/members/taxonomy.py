"""The closed vocabularies of a member profile: channels, genders, age bands, interests, regions.

Segments filter on these, so they are validated on the way in: an unknown
interest or region is refused rather than stored as a value no segment matches.
"""

from __future__ import annotations

from enum import StrEnum

import pycountry


class Channel(StrEnum):
    APP = "app"
    WEB = "web"
    WECHAT = "wechat"
    WEIBO = "weibo"
    DOUYIN = "douyin"
    ZHIHU = "zhihu"
    OFFLINE = "offline"
    PARTNER = "partner"


class Gender(StrEnum):
    FEMALE = "female"
    MALE = "male"
    OTHER = "other"
    UNDISCLOSED = "undisclosed"


class AgeBand(StrEnum):
    UNDER_18 = "under-18"
    A18_24 = "18-24"
    A25_34 = "25-34"
    A35_44 = "35-44"
    A45_54 = "45-54"
    A55_PLUS = "55+"


# Inclusive age bounds of each band; the last band is open-ended.
AGE_BOUNDS: dict[AgeBand, tuple[int, int]] = {
    AgeBand.UNDER_18: (0, 17),
    AgeBand.A18_24: (18, 24),
    AgeBand.A25_34: (25, 34),
    AgeBand.A35_44: (35, 44),
    AgeBand.A45_54: (45, 54),
    AgeBand.A55_PLUS: (55, 150),
}

OLDEST_BIRTH_YEAR = 1900


def age_band(birth_year: int | None, this_year: int) -> AgeBand | None:
    """The band of someone born in ``birth_year``, by the age they reach this year."""
    if birth_year is None:
        return None
    age = this_year - birth_year
    for band, (low, high) in AGE_BOUNDS.items():
        if low <= age <= high:
            return band
    return None


def birth_years_of(band: AgeBand, this_year: int) -> tuple[int, int]:
    """The inclusive birth-year range of a band this year: what a segment query compares."""
    low, high = AGE_BOUNDS[band]
    return this_year - high, this_year - low


INTERESTS: frozenset[str] = frozenset(
    {
        "anime",
        "art",
        "beauty",
        "books",
        "cars",
        "coffee",
        "cooking",
        "fashion",
        "film",
        "finance",
        "fitness",
        "food",
        "gaming",
        "health",
        "home",
        "music",
        "outdoor",
        "parenting",
        "pets",
        "photography",
        "sports",
        "tea",
        "tech",
        "travel",
    }
)


def is_country(code: str) -> bool:
    return pycountry.countries.get(alpha_2=code) is not None


def is_subdivision_of(code: str, country: str) -> bool:
    """``CN-SH`` is a subdivision of ``CN`` (ISO 3166-2)."""
    sub = pycountry.subdivisions.get(code=code)
    return sub is not None and sub.country_code == country
