"""Kafka topics: one per producing service, plus one dead-letter topic per consumer group."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    name: str
    producer: str
    retention_days: int = 7


MEMBERS = Topic("community.members.v1", "members")
CONTENT = Topic("community.content.v1", "content")
CAMPAIGNS = Topic("community.campaigns.v1", "campaigns")
REWARDS = Topic("community.rewards.v1", "rewards")
WEBHOOKS = Topic("community.webhooks.v1", "webhooks")
GATEWAY = Topic("community.gateway.v1", "gateway")

DOMAIN_TOPICS: tuple[Topic, ...] = (MEMBERS, CONTENT, CAMPAIGNS, REWARDS, WEBHOOKS, GATEWAY)


def dlq_topic(consumer_group: str) -> str:
    """Where a consumer group parks messages it cannot process."""
    return f"community.dlq.{consumer_group}.v1"
