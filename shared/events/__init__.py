"""CloudEvents envelope, topics and the registry of event contracts."""

from shared.events import contracts
from shared.events.envelope import CONTENT_TYPE, CloudEvent
from shared.events.registry import REGISTRY, EventData, EventType, UnknownEventType, lookup, spec_of
from shared.events.topics import DOMAIN_TOPICS, Topic, dlq_topic

__all__ = [
    "CONTENT_TYPE",
    "DOMAIN_TOPICS",
    "REGISTRY",
    "CloudEvent",
    "EventData",
    "EventType",
    "Topic",
    "UnknownEventType",
    "contracts",
    "dlq_topic",
    "lookup",
    "spec_of",
]
