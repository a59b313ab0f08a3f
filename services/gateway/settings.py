from typing import ClassVar

from pydantic import AliasChoices, Field, SecretStr, model_validator

from shared.settings import LOCAL_ADMIN_PASSWORD, SERVICE_PORTS, ServiceSettings, prefixed

UPSTREAMS = ("members", "content", "campaigns", "rewards", "analytics", "webhooks")


class GatewaySettings(ServiceSettings):
    service_name: ClassVar[str] = "gateway"
    model_config = prefixed("gateway")

    admin_password: SecretStr | None = Field(
        None, validation_alias=AliasChoices("COMMUNITY_ADMIN_PASSWORD")
    )
    members_url: str = ""
    content_url: str = ""
    campaigns_url: str = ""
    rewards_url: str = ""
    analytics_url: str = ""
    webhooks_url: str = ""
    redis_url: str | None = None
    rate_limit_per_min: int = Field(600, ge=1)
    anonymous_rate_limit_per_min: int = Field(120, ge=1)
    upstream_connect_timeout_s: float = 2.0
    upstream_read_timeout_s: float = 30.0
    openapi_cache_s: float = 30.0

    @model_validator(mode="after")
    def _defaults(self) -> "GatewaySettings":
        for name in UPSTREAMS:
            if not getattr(self, f"{name}_url"):
                setattr(self, f"{name}_url", f"http://127.0.0.1:{SERVICE_PORTS[name]}")
        if self.admin_password is None and self.is_local:
            self.admin_password = SecretStr(LOCAL_ADMIN_PASSWORD)
        if (
            not self.is_local
            and self.admin_password is not None
            and self.admin_password.get_secret_value() == LOCAL_ADMIN_PASSWORD
        ):
            raise ValueError("COMMUNITY_ADMIN_PASSWORD must not be the local default")
        return self

    def upstream_url(self, service: str) -> str:
        url: str = getattr(self, f"{service}_url")
        return url
