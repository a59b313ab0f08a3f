"""Event contracts, one module per producing service. Importing this package registers them all."""

from shared.events.contracts import campaigns, content, gateway, members, rewards, webhooks

__all__ = ["campaigns", "content", "gateway", "members", "rewards", "webhooks"]
