"""What the content service subscribes to: ``{event type: handler}``."""

from __future__ import annotations

from shared.consumer import Handler

SUBSCRIPTIONS: dict[str, Handler] = {}
