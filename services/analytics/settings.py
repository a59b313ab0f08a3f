from typing import ClassVar

from shared.settings import ServiceSettings, prefixed


class AnalyticsSettings(ServiceSettings):
    service_name: ClassVar[str] = "analytics"
    model_config = prefixed("analytics")
