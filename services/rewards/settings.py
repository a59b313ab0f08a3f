from typing import ClassVar, Literal

from pydantic import Field

from shared.settings import ServiceSettings, prefixed


class RewardsSettings(ServiceSettings):
    service_name: ClassVar[str] = "rewards"
    model_config = prefixed("rewards")

    # Lots expire this long after they were earned; 0 means points never expire.
    points_expiry_days: int = Field(365, ge=0)
    # ``points.expiring`` goes out this long before a lot expires.
    expiry_reminder_days: int = Field(14, ge=0)
    # Earned points stay pending this long before they can be spent (0: at once).
    default_hold_h: float = Field(0.0, ge=0)
    # Tier basis: ``lifetime`` points (default) or points earned in a ``rolling`` window.
    tier_basis: Literal["lifetime", "rolling"] = "lifetime"
    tier_rolling_window_days: int = Field(365, ge=1)
    # A tier is kept at least this long; downgrades happen only at the review date.
    tier_review_days: int = Field(90, ge=1)
    release_job_interval_s: float = Field(60.0, gt=0)
    expiry_job_interval_s: float = Field(300.0, gt=0)
    reminder_job_interval_s: float = Field(3600.0, gt=0)
    tier_review_job_interval_s: float = Field(3600.0, gt=0)
    job_batch_size: int = Field(500, ge=1)
    # Rules and tiers are read on every earned event; a replica caches them this long
    # (changes made through this replica apply at once, elsewhere within this time).
    config_cache_s: float = Field(5.0, ge=0)
    # Redemptions arriving together commit in one transaction (group commit), at most this
    # many per transaction; 1 gives every redemption a transaction of its own.
    redemption_batch_max: int = Field(
        64, ge=1, description="Most redemptions committed together in one transaction."
    )
    # Batches in their own transactions at once (PostgreSQL; SQLite runs one at a time).
    redemption_batches_in_flight: int = Field(
        2, ge=1, description="Redemption batches in their own transactions at once (PostgreSQL)."
    )
