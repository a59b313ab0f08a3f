from typing import ClassVar

from pydantic import Field

from shared.settings import ServiceSettings, prefixed


class AnalyticsSettings(ServiceSettings):
    service_name: ClassVar[str] = "analytics"
    model_config = prefixed("analytics")

    members_url: str = Field(
        "http://127.0.0.1:8001",
        description="Base URL of the members service (segment membership for per-segment figures).",
    )
    members_timeout_s: float = Field(
        5.0, gt=0, description="Timeout of one page of a segment's members."
    )
    segment_cache_s: float = Field(
        60.0,
        ge=0,
        description="How long a segment's fetched membership serves per-segment figures.",
    )
