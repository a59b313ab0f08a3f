"""The catalogue of every event type, generated from the contracts as AsyncAPI 3.0.

``community events catalog --write`` refreshes the committed copy in
``docs/events/asyncapi.json``; a test fails when the two drift apart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shared.events.envelope import CONTENT_TYPE, CloudEvent
from shared.events.registry import REGISTRY
from shared.events.topics import DOMAIN_TOPICS

CATALOG_PATH = Path(__file__).resolve().parents[2] / "docs" / "events" / "asyncapi.json"


def _message_name(event_name: str) -> str:
    return "".join(part.capitalize() for part in event_name.replace("_", ".").split("."))


def _envelope_schema(data_ref: str, event_name: str, version: int) -> dict[str, Any]:
    schema = CloudEvent.model_json_schema()
    schema.pop("title", None)
    props = schema["properties"]
    props["type"] = {"const": event_name, "type": "string"}
    props["schemaversion"] = {"const": version, "type": "integer"}
    props["data"] = {"$ref": data_ref}
    return schema


def build_catalog() -> dict[str, Any]:
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic in DOMAIN_TOPICS:
        channel_messages: dict[str, Any] = {}
        for spec in sorted(REGISTRY.values(), key=lambda s: s.name):
            if spec.topic != topic:
                continue
            name = _message_name(spec.name)
            data_schema = spec.model.model_json_schema(ref_template="#/components/schemas/{model}")
            for def_name, definition in data_schema.pop("$defs", {}).items():
                schemas[def_name] = definition
            schemas[spec.model.__name__] = data_schema
            messages[name] = {
                "name": spec.name,
                "title": spec.name,
                "summary": spec.summary,
                "contentType": CONTENT_TYPE,
                "headers": {
                    "type": "object",
                    "properties": {"content-type": {"const": CONTENT_TYPE, "type": "string"}},
                },
                "payload": _envelope_schema(
                    f"#/components/schemas/{spec.model.__name__}", spec.name, spec.version
                ),
                "bindings": {"kafka": {"key": {"type": "string", "description": "subject"}}},
            }
            channel_messages[name] = {"$ref": f"#/components/messages/{name}"}
        channel_id = topic.name.replace(".", "_")
        channels[channel_id] = {
            "address": topic.name,
            "description": f"Events published by the {topic.producer} service.",
            "messages": channel_messages,
        }
        operations[f"publish_{channel_id}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": f"{topic.producer} publishes through its transactional outbox.",
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Community platform events",
            "version": "1.0.0",
            "description": (
                "Every domain event, as a CloudEvents 1.0 structured-mode JSON message. "
                "The Kafka message key is the event's subject (the aggregate id)."
            ),
        },
        "defaultContentType": CONTENT_TYPE,
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def render_catalog() -> str:
    return json.dumps(build_catalog(), indent=2, sort_keys=True, default=str) + "\n"
