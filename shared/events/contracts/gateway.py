"""Events published by the gateway on ``community.gateway.v1`` (partner API keys)."""

from __future__ import annotations

from datetime import datetime

from shared.events.registry import EventData, event_type
from shared.events.topics import GATEWAY


@event_type("api_key.revoked", topic=GATEWAY)
class ApiKeyRevoked(EventData):
    """An operator revoked a partner API key; what the partner set up with it must stop."""

    key_id: str
    name: str
    # The identity requests made with the key carried (``apikey:<id>``): what other
    # services recorded as the owner of things the partner created.
    principal_subject: str
    revoked_by: str
    revoked_at: datetime
