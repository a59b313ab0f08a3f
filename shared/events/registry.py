"""One pydantic model per event type, registered with its topic and version.

Producers and consumers import the same model: the contract cannot drift.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel, ConfigDict

from shared.events.topics import Topic


class EventData(BaseModel):
    """Base of every event's ``data``. Unknown fields are ignored so producers can add fields."""

    model_config = ConfigDict(extra="ignore", frozen=True)


@dataclass(frozen=True)
class EventType:
    name: str
    topic: Topic
    model: type[EventData]
    version: int
    summary: str


REGISTRY: dict[str, EventType] = {}
_BY_MODEL: dict[type[EventData], EventType] = {}

D = TypeVar("D", bound=type[EventData])


class UnknownEventType(LookupError):
    pass


def event_type(name: str, *, topic: Topic, version: int = 1) -> Callable[[D], D]:
    """Register a data model as the contract of event type ``name``."""

    def register(model: D) -> D:
        if name in REGISTRY:
            raise ValueError(f"event type {name} registered twice")
        summary = (model.__doc__ or name).strip().splitlines()[0]
        spec = EventType(name=name, topic=topic, model=model, version=version, summary=summary)
        REGISTRY[name] = spec
        _BY_MODEL[model] = spec
        return model

    return register


def spec_of(data: EventData) -> EventType:
    try:
        return _BY_MODEL[type(data)]
    except KeyError:
        raise UnknownEventType(f"{type(data).__name__} is not a registered event") from None


def lookup(name: str) -> EventType:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownEventType(f"unknown event type {name!r}") from None
