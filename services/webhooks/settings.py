from typing import ClassVar

from shared.settings import ServiceSettings, prefixed


class WebhooksSettings(ServiceSettings):
    service_name: ClassVar[str] = "webhooks"
    model_config = prefixed("webhooks")
