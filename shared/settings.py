"""Typed settings shared by every service.

Platform-wide values (profile, secrets, broker) use fixed environment names so
one ConfigMap serves every service; per-service values (database URL, port)
use the service's prefix, e.g. ``MEMBERS_DATABASE_URL``.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOCAL_JWT_SECRET = "local-development-secret-change-me-0123456789"  # noqa: S105
LOCAL_ADMIN_PASSWORD = "admin"  # noqa: S105

SERVICE_PORTS: dict[str, int] = {
    "gateway": 8000,
    "members": 8001,
    "content": 8002,
    "campaigns": 8003,
    "rewards": 8004,
    "analytics": 8005,
    "webhooks": 8006,
}


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class ServiceSettings(BaseSettings):
    """Base of every service's settings; subclasses set ``service_name`` and the env prefix."""

    service_name: ClassVar[str] = "service"
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    profile: Literal["local", "production"] = Field(
        "local", validation_alias=_env("COMMUNITY_PROFILE")
    )
    data_dir: Path = Field(Path("data"), validation_alias=_env("COMMUNITY_DATA_DIR"))
    jwt_secret: SecretStr = Field(
        SecretStr(LOCAL_JWT_SECRET), validation_alias=_env("COMMUNITY_JWT_SECRET")
    )
    token_ttl_min: int = Field(60, validation_alias=_env("COMMUNITY_TOKEN_TTL_MIN"))
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS")
    )
    kafka_enable_idempotence: bool = Field(False, validation_alias=_env("KAFKA_ENABLE_IDEMPOTENCE"))
    kafka_topic_partitions: int = Field(6, ge=1, validation_alias=_env("KAFKA_TOPIC_PARTITIONS"))
    kafka_replication_factor: int = Field(
        1, ge=1, validation_alias=_env("KAFKA_REPLICATION_FACTOR")
    )
    log_level: str = Field("INFO", validation_alias=_env("COMMUNITY_LOG_LEVEL"))
    log_json: bool = Field(True, validation_alias=_env("COMMUNITY_LOG_JSON"))

    # Per-service values, read with the subclass's prefix.
    host: str = "127.0.0.1"
    port: int = 0
    database_url: str = ""
    relay_poll_interval_s: float = 0.5
    relay_batch_size: int = 500
    relay_max_backoff_s: float = 5.0
    consumer_max_attempts: int = 3
    consumer_fetch_max_wait_ms: int = 50
    consumer_retry_backoff_s: float = 0.2
    idempotency_ttl_h: int = 24
    migrate_on_start: bool = True

    @model_validator(mode="after")
    def _fill_defaults_and_refuse_local_secrets(self) -> ServiceSettings:
        if not self.port:
            self.port = SERVICE_PORTS.get(self.service_name, 8000)
        if not self.database_url:
            path = (self.data_dir / f"{self.service_name}.db").resolve()
            self.database_url = f"sqlite+aiosqlite:///{path}"
        if self.profile != "local":
            if self.jwt_secret.get_secret_value() == LOCAL_JWT_SECRET:
                raise ValueError("COMMUNITY_JWT_SECRET must be set outside the local profile")
            if len(self.jwt_secret.get_secret_value()) < 32:
                raise ValueError("COMMUNITY_JWT_SECRET must be at least 32 characters")
        return self

    @property
    def is_local(self) -> bool:
        return self.profile == "local"


def prefixed(service: str) -> SettingsConfigDict:
    """The settings config of one service: its env prefix, e.g. ``MEMBERS_``."""
    return SettingsConfigDict(
        env_prefix=f"{service.upper()}_", extra="ignore", populate_by_name=True
    )
