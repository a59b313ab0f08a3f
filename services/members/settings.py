from typing import ClassVar

from shared.settings import ServiceSettings, prefixed


class MembersSettings(ServiceSettings):
    service_name: ClassVar[str] = "members"
    model_config = prefixed("members")
