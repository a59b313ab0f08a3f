"""The CloudEvents 1.0 envelope, structured JSON mode.

What we publish is ``application/cloudevents+json``: the attributes and the
event's ``data`` in one JSON object. Extensions: ``schemaversion`` (the data
model's version), ``partitionkey`` (the Kafka message key, as in the Kafka
protocol binding) and ``traceparent`` (W3C trace context, as in the
distributed-tracing extension).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

CONTENT_TYPE = "application/cloudevents+json"


class CloudEvent(BaseModel):
    model_config = ConfigDict(extra="allow")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    source: str
    type: str
    subject: str | None = None
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    datacontenttype: Literal["application/json"] = "application/json"
    schemaversion: int = 1
    partitionkey: str | None = None
    traceparent: str | None = None
    data: dict[str, Any]

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> CloudEvent:
        return cls.model_validate_json(raw)
