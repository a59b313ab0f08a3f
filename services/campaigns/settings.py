from typing import ClassVar

from shared.settings import ServiceSettings, prefixed


class CampaignsSettings(ServiceSettings):
    service_name: ClassVar[str] = "campaigns"
    model_config = prefixed("campaigns")
