"""The platform's services. Each is its own package; none imports another."""

SERVICES: tuple[str, ...] = (
    "members",
    "content",
    "campaigns",
    "rewards",
    "analytics",
    "webhooks",
    "gateway",
)
