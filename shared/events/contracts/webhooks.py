"""Events published by the webhooks service on ``community.webhooks.v1``."""

from __future__ import annotations

from datetime import datetime

from shared.events.registry import EventData, event_type
from shared.events.topics import WEBHOOKS


@event_type("webhook.endpoint_disabled", topic=WEBHOOKS)
class WebhookEndpointDisabled(EventData):
    """A partner endpoint was disabled (it answered 410, or kept failing for days)."""

    endpoint_id: str
    url: str
    reason: str
    disabled_at: datetime
