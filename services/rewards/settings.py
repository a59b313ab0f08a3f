from typing import ClassVar

from shared.settings import ServiceSettings, prefixed


class RewardsSettings(ServiceSettings):
    service_name: ClassVar[str] = "rewards"
    model_config = prefixed("rewards")
