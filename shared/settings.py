"""Typed settings shared by every service.

Platform-wide values (profile, secrets, broker) use fixed environment names so
one ConfigMap serves every service; per-service values (database URL, port)
use the service's prefix, e.g. ``MEMBERS_DATABASE_URL``.
"""

from __future__ import annotations

from collections.abc import Callable
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
BACKEND_SERVICES = tuple(name for name in SERVICE_PORTS if name != "gateway")

# Who calls whom over HTTP; each pair is the setting ``<CALLER>_<CALLEE>_URL``.
SERVICE_CALLS: dict[str, tuple[str, ...]] = {
    "gateway": BACKEND_SERVICES,
    "analytics": ("members",),  # segment membership for per-segment figures
    "campaigns": ("members", "rewards"),  # eligibility; lottery entries priced in points
}


def service_url_settings(url_of: Callable[[str], str]) -> dict[str, str]:
    """Every ``<CALLER>_<CALLEE>_URL`` variable, with ``url_of(callee)`` as its value."""
    return {
        f"{caller.upper()}_{callee.upper()}_URL": url_of(callee)
        for caller, callees in SERVICE_CALLS.items()
        for callee in callees
    }


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class ServiceSettings(BaseSettings):
    """Base of every service's settings; subclasses set ``service_name`` and the env prefix."""

    service_name: ClassVar[str] = "service"
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    profile: Literal["local", "production"] = Field(
        "local",
        validation_alias=_env("COMMUNITY_PROFILE"),
        description="`local` allows the built-in development secrets; `production` refuses them.",
    )
    data_dir: Path = Field(
        Path("data"),
        validation_alias=_env("COMMUNITY_DATA_DIR"),
        description="Folder for the SQLite files when no database URL is set.",
    )
    jwt_secret: SecretStr = Field(
        SecretStr(LOCAL_JWT_SECRET),
        validation_alias=_env("COMMUNITY_JWT_SECRET"),
        description="HMAC key of the bearer tokens; at least 32 characters outside `local`.",
    )
    token_ttl_min: int = Field(
        60,
        validation_alias=_env("COMMUNITY_TOKEN_TTL_MIN"),
        description="Lifetime of an issued access token.",
    )
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS"),
        description="Kafka bootstrap servers, comma-separated `host:port`.",
    )
    kafka_enable_idempotence: bool = Field(
        False,
        validation_alias=_env("KAFKA_ENABLE_IDEMPOTENCE"),
        description="Idempotent producers; on for Apache Kafka, off for Tansu (no InitProducerId).",
    )
    kafka_topic_partitions: int = Field(
        6,
        ge=1,
        validation_alias=_env("KAFKA_TOPIC_PARTITIONS"),
        description="Partitions of a domain topic a service creates at startup.",
    )
    kafka_replication_factor: int = Field(
        1,
        ge=1,
        validation_alias=_env("KAFKA_REPLICATION_FACTOR"),
        description="Replication factor of the topics a service creates at startup.",
    )
    log_level: str = Field(
        "INFO", validation_alias=_env("COMMUNITY_LOG_LEVEL"), description="Python log level."
    )
    log_json: bool = Field(
        True,
        validation_alias=_env("COMMUNITY_LOG_JSON"),
        description="One JSON object per log line (request id, event id); off for plain text.",
    )
    shutdown_grace_s: float = Field(
        20.0,
        gt=0,
        validation_alias=_env("COMMUNITY_SHUTDOWN_GRACE_S"),
        description=(
            "Budget from SIGTERM to exit: half drains in-flight HTTP requests, the rest stops "
            "consumers, jobs and the relay. Keep below terminationGracePeriodSeconds."
        ),
    )

    # Per-service values, read with the subclass's prefix.
    host: str = Field("127.0.0.1", description="Interface the HTTP server listens on.")
    port: int = Field(0, description="HTTP port; 0 picks the service's local default port.")
    database_url: str = Field(
        "",
        description="SQLAlchemy async URL (`postgresql+asyncpg://...`); empty: a SQLite file.",
    )
    max_concurrent_transactions: int = Field(
        0,
        ge=0,
        description=(
            "Transactional requests one process runs at once, the rest waiting in arrival "
            "order; 0: 6 on SQLite (one writer at a time), unbounded on PostgreSQL."
        ),
    )
    relay_poll_interval_s: float = Field(
        0.5, description="Outbox relay poll when no commit woke it."
    )
    relay_batch_size: int = Field(500, description="Most outbox rows published per batch.")
    relay_max_backoff_s: float = Field(
        5.0, description="Longest wait between relay retries while the broker is down."
    )
    consumer_max_attempts: int = Field(
        3, description="Tries of one event before it goes to the dead-letter topic."
    )
    # Kafka answers a parked fetch as soon as data arrives, so this only bounds idle polling.
    # Tansu answers when the wait runs out: up to this much latency a hop, and at 50 ms the
    # mixed load spent 11% more CPU a request (broker and consumers polling) for no gain in
    # freshness (p95 about 0.4 s either way).
    consumer_fetch_max_wait_ms: int = Field(
        200, description="Longest the broker parks a fetch waiting for data."
    )
    consumer_retry_backoff_s: float = Field(
        0.2, description="Base wait between tries of a failing event, growing with each try."
    )
    idempotency_ttl_h: int = Field(
        24, description="How long an `Idempotency-Key` and its stored response are kept."
    )
    max_body_bytes: int = Field(
        1_048_576, ge=1024, description="Largest request body accepted; larger ones get 413."
    )
    migrate_on_start: bool = Field(
        True, description="Apply Alembic migrations at startup; off when a migration Job runs."
    )

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
