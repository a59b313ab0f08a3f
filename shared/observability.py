"""Structured JSON logs, Prometheus metrics and the request context (request id, trace).

Metrics are process-wide with a ``service`` label, so several services can share
one process in tests without registering the same metric twice.
"""

from __future__ import annotations

import json
import logging
import random
import sys
import time
from contextvars import ContextVar
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.events.envelope import new_event_id

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
event_id_var: ContextVar[str | None] = ContextVar("event_id", default=None)
traceparent_var: ContextVar[str | None] = ContextVar("traceparent", default=None)

REQUEST_ID_HEADER = "x-request-id"
# ASGI servers hand header names over lower-cased (the ASGI spec requires it).
_REQUEST_ID_KEY = REQUEST_ID_HEADER.encode()

HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency by route.",
    ["service", "method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
OUTBOX_PENDING = Gauge("outbox_pending_events", "Committed events not yet published.", ["service"])
OUTBOX_LAG = Gauge("outbox_lag_seconds", "Age of the oldest unpublished outbox event.", ["service"])
OUTBOX_PUBLISHED = Counter("outbox_published_total", "Events published by the relay.", ["service"])
OUTBOX_SEND_ERRORS = Counter(
    "outbox_send_errors_total", "Relay batches that failed to publish.", ["service"]
)
CONSUMER_LAG = Gauge(
    "consumer_lag_messages", "Messages behind the partition end.", ["group", "topic", "partition"]
)
CONSUMED = Counter(
    "consumer_events_total", "Events handled by outcome.", ["group", "type", "outcome"]
)
DLQ_MESSAGES = Counter(
    "dlq_messages_total", "Messages sent to the dead-letter topic.", ["group", "topic"]
)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, var in (("request_id", request_id_var), ("event_id", event_id_var)):
            value = var.get()
            if value:
                entry[key] = value
        traceparent = traceparent_var.get()
        if traceparent:
            entry["trace_id"] = traceparent.split("-")[1]
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update(extra)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(service: str, level: str = "INFO", as_json: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if as_json:
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {service} %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    logging.getLogger("uvicorn.access").disabled = True


def new_traceparent(parent: str | None = None) -> str:
    """A W3C traceparent continuing ``parent``'s trace with a new span, or a new trace."""
    # Ids need to be unique, not secret: ``getrandbits`` as OpenTelemetry uses, where
    # ``secrets`` was a getrandom() system call for every consumed event and request.
    trace_id = ""
    if parent:
        parts = parent.split("-")
        if len(parts) == 4 and len(parts[1]) == 32:
            trace_id = parts[1]
    trace_id = trace_id or f"{random.getrandbits(128) or 1:032x}"
    return f"00-{trace_id}-{random.getrandbits(64) or 1:016x}-01"


class RequestContextMiddleware:
    """Request id and trace context for every request, plus the latency histogram and access log."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service
        self.log = logging.getLogger(f"{service}.access")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming_id = parent = None
        for key, value in scope["headers"]:
            if key == _REQUEST_ID_KEY:
                incoming_id = value.decode("latin-1")
            elif key == b"traceparent":
                parent = value.decode("latin-1")
        # A random UUID from a batch: uuid4() is a getrandom() system call per request.
        request_id = incoming_id or new_event_id()
        if len(request_id) > 200:
            request_id = new_event_id()
        rid_token = request_id_var.set(request_id)
        tp_token = traceparent_var.set(new_traceparent(parent))
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # Replace, not add: a proxied response already carries the same id.
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() != REQUEST_ID_HEADER.encode()
                ]
                message["headers"] = [*headers, (REQUEST_ID_HEADER.encode(), request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            HTTP_LATENCY.labels(self.service, scope["method"], template, str(status)).observe(
                elapsed
            )
            if template not in ("/healthz", "/readyz", "/metrics"):
                self.log.info(
                    "%s %s %s",
                    scope["method"],
                    scope["path"],
                    status,
                    extra={"fields": {"status": status, "ms": round(elapsed * 1000, 2)}},
                )
            request_id_var.reset(rid_token)
            traceparent_var.reset(tp_token)
