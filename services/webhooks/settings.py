from typing import ClassVar

from pydantic import Field, SecretStr, model_validator

from shared.settings import ServiceSettings, prefixed

LOCAL_ENDPOINT_SECRET_KEY = "local-webhook-secret-key-change-me-0123456789"  # noqa: S105
# Standard Webhooks' suggested schedule: about 28 hours from the first try to the last.
DEFAULT_RETRY_SCHEDULE_S = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


class WebhooksSettings(ServiceSettings):
    service_name: ClassVar[str] = "webhooks"
    model_config = prefixed("webhooks")

    endpoint_secret_key: SecretStr = Field(
        SecretStr(LOCAL_ENDPOINT_SECRET_KEY),
        description=(
            "Secret from which the key sealing endpoint signing secrets at rest (AES-GCM) is "
            "derived; required outside `local`. The migration that seals existing rows reads it "
            "from the environment too."
        ),
    )
    allow_private_targets: bool = Field(
        False,
        description="Deliver to private, loopback and link-local addresses (local testing only).",
    )
    private_target_allowlist: list[str] = Field(
        default_factory=list,
        description="Networks (CIDR) an operator permits although they are in a blocked range.",
    )
    connect_timeout_s: float = Field(5.0, gt=0)
    total_timeout_s: float = Field(15.0, gt=0, description="Whole request, connect to last byte.")
    resolve_timeout_s: float = Field(2.0, gt=0, description="DNS lookup at registration.")
    dispatch_poll_interval_s: float = Field(
        1.0,
        gt=0,
        description=(
            "Dispatcher poll for retries coming due and other replicas' deliveries; a commit "
            "that records deliveries in this process wakes it at once."
        ),
    )
    dispatch_concurrency: int = Field(
        64, ge=1, description="Endpoints served at once, each in its own task."
    )
    dispatch_concurrency_per_endpoint: int = Field(
        4,
        ge=1,
        description=(
            "Requests in flight to one endpoint, each for a different event key (aggregate); "
            "events with the same key are sent one after the other, in order."
        ),
    )
    dispatch_batch_per_endpoint: int = Field(
        500, ge=1, description="Most attempts to one endpoint per turn before others get theirs."
    )
    dispatch_lease_s: float = Field(
        60.0, gt=0, description="How long a replica owns an endpoint before others may take it."
    )
    retry_schedule_s: list[float] = Field(default_factory=lambda: list(DEFAULT_RETRY_SCHEDULE_S))
    retry_jitter: float = Field(0.2, ge=0, le=1, description="Up to this share added at random.")
    retry_after_max_s: float = Field(86400.0, gt=0)
    disable_after_failing_h: float = Field(
        120.0, gt=0, description="An endpoint failing without a success this long is disabled."
    )
    retention_days: int = Field(30, ge=1, description="Delivery log kept this long.")
    response_snippet_bytes: int = Field(1024, ge=0, le=65536)

    @model_validator(mode="after")
    def _lease_outlives_a_request(self) -> "WebhooksSettings":
        if self.dispatch_lease_s <= self.total_timeout_s:
            raise ValueError("dispatch_lease_s must exceed total_timeout_s")
        return self

    @model_validator(mode="after")
    def _refuse_local_secret_key(self) -> "WebhooksSettings":
        if (
            not self.is_local
            and self.endpoint_secret_key.get_secret_value() == LOCAL_ENDPOINT_SECRET_KEY
        ):
            raise ValueError("WEBHOOKS_ENDPOINT_SECRET_KEY must be set outside the local profile")
        return self
