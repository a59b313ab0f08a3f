from typing import ClassVar

from pydantic import Field, SecretStr, model_validator

from shared.settings import ServiceSettings, prefixed

LOCAL_CONTACT_KEY = "local-contact-key-change-me-0123456789abcdef"


class MembersSettings(ServiceSettings):
    service_name: ClassVar[str] = "members"
    model_config = prefixed("members")

    contact_key: SecretStr = Field(
        SecretStr(LOCAL_CONTACT_KEY),
        description="Secret from which the contact-encryption and lookup keys are derived.",
    )
    referral_daily_cap: int = Field(
        20, ge=1, description="Most invitees one referrer may bring in per UTC day."
    )
    referral_claim_window_days: int = Field(
        7, ge=0, description="Days after registration during which an invite code may be added."
    )
    referral_activation_window_days: int = Field(
        30,
        ge=1,
        description="Days after registration in which a first action activates a referral.",
    )

    @model_validator(mode="after")
    def _refuse_local_contact_key(self) -> "MembersSettings":
        if not self.is_local and self.contact_key.get_secret_value() == LOCAL_CONTACT_KEY:
            raise ValueError("MEMBERS_CONTACT_KEY must be set outside the local profile")
        return self
