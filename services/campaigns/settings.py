from typing import ClassVar

from pydantic import Field

from shared.settings import ServiceSettings, prefixed


class CampaignsSettings(ServiceSettings):
    service_name: ClassVar[str] = "campaigns"
    model_config = prefixed("campaigns")

    members_url: str = Field(
        "http://127.0.0.1:8001", description="Base URL of the members service (segment checks)."
    )
    members_timeout_s: float = Field(
        3.0, gt=0, description="Timeout of one call to the members service."
    )
    lifecycle_interval_s: float = Field(
        1.0, gt=0, description="How often the scheduler starts and ends campaigns that are due."
    )
    rewards_url: str = Field(
        "http://127.0.0.1:8004",
        description="Base URL of the rewards service (spending points on lottery entries).",
    )
    rewards_timeout_s: float = Field(
        3.0, gt=0, description="Timeout of one call to the rewards service."
    )
    pending_entry_retry_s: float = Field(
        30.0,
        gt=0,
        description="Age after which a lottery entry still waiting on its points spend is "
        "retried by the reconciliation job (longer than one rewards call).",
    )
