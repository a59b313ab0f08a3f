"""Event contracts, one module per producing service. Importing this package registers them all."""

from shared.events.contracts import campaigns, content, members, rewards, webhooks

__all__ = ["campaigns", "content", "members", "rewards", "webhooks"]
