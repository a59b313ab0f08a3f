from typing import ClassVar

from shared.settings import ServiceSettings, prefixed


class ContentSettings(ServiceSettings):
    service_name: ClassVar[str] = "content"
    model_config = prefixed("content")

    publish_interval_s: float = 1.0
