"""Webhooks: partner webhook endpoints and Standard Webhooks deliveries."""
