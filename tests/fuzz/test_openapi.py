"""Schemathesis against every service's OpenAPI document, and the gateway's merged one.

Every check schemathesis has is on (its defaults): no server error, status codes,
content types, headers and bodies as documented, invalid input refused, valid input
accepted, ``Allow`` on 405, authentication not ignored. Each service runs in process
on a SQLite file of its own (the fuzzing is about HTTP contracts, not the database);
the gateway proxies to every service in process too, so its merged document is
checked end to end. Examples are few and derandomized: a finding reproduces.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from schemathesis import engine
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events
from schemathesis.python import asgi

from services.analytics.app import create_app as create_analytics
from services.analytics.segments import SegmentSource
from services.analytics.settings import AnalyticsSettings
from services.campaigns.app import create_app as create_campaigns
from services.campaigns.members_client import MembersClient
from services.campaigns.settings import CampaignsSettings
from services.content.app import create_app as create_content
from services.content.settings import ContentSettings
from services.gateway.app import create_app as create_gateway
from services.gateway.proxy import Gateway
from services.gateway.settings import GatewaySettings
from services.gateway.upstream import ClientUpstream
from services.members.app import create_app as create_members
from services.members.settings import MembersSettings
from services.rewards.app import create_app as create_rewards
from services.rewards.settings import RewardsSettings
from services.webhooks.app import create_app as create_webhooks
from services.webhooks.settings import WebhooksSettings
from shared.auth import Role, TokenCodec
from shared.settings import LOCAL_JWT_SECRET, ServiceSettings
from tests.conftest import token_for

MAX_EXAMPLES = 5
STATEFUL_STEPS = 6
SEED = 20261122
TOKENS = TokenCodec(LOCAL_JWT_SECRET)


# Pydantic's type for a ``model_validator``/``field_validator`` refusal: a rule across fields or
# against a list (``min`` above ``max``, a known interest), which JSON Schema cannot state.
RULE_ERRORS = frozenset({"value_error", "assertion_error"})
# A well-formed request may still break a domain rule (a cursor this API never issued, a
# community it does not know, a spending cap): 422 with a problem naming the rule.
POSITIVE_STATUSES = ["2xx", "3xx", "401", "403", "404", "409", "422", "429"]


@schemathesis.check
def declared_constraints_match_validation(ctx: Any, response: Any, case: Any) -> bool | None:
    """A request the schema allows is never refused for a constraint the schema could state.

    This keeps ``positive_data_acceptance`` strict where it matters: if request
    validation refuses a schema-valid request for a length, a type, a pattern or a
    missing field, the OpenAPI document is wrong and this check fails.
    """
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return None
    if response.status_code != 422 or "json" not in response.headers.get("content-type", [""])[0]:
        return None
    problem = response.json()
    if not str(problem.get("type", "")).endswith("/validation-failed"):
        return None
    undeclared = [e for e in problem.get("errors", []) if e.get("type") not in RULE_ERRORS]
    assert not undeclared, f"schema-valid request refused by validation: {undeclared}"
    return None


def fuzz_config(*, coverage: bool = True) -> SchemathesisConfig:
    """Schemathesis' defaults (every check, every phase) with few, reproducible examples.

    The operator's bearer token lets generated requests reach the handlers; the
    ``ignored_auth`` check still sends requests without it.
    """
    return SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "headers": {"Authorization": f"Bearer {token_for(Role.OPERATOR, subject='fuzz-ops')}"},
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True},
            "checks": {"positive_data_acceptance": {"expected-statuses": POSITIVE_STATUSES}},
            "phases": {
                # Error feedback reads ``errors[].field`` ("body.rules", location first) as a body
                # property path, then adds a ``body`` property the schema forbids to "valid" cases.
                "coverage": {"enabled": coverage},
                "fuzzing": {"error-feedback": {"enabled": False}},
                "stateful": {"max-steps": STATEFUL_STEPS, "generation": {"max-examples": 3}},
            },
        }
    )


def _sqlite(tmp: Path, name: str) -> dict[str, Any]:
    return {"database_url": f"sqlite+aiosqlite:///{tmp / name}.db", "log_json": False}


def _settings(cls: type[ServiceSettings], tmp: Path, name: str) -> Any:
    return cls.model_validate(_sqlite(tmp, name))


def _members_client(members: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=members)
    return httpx.AsyncClient(transport=transport, base_url="http://members")


def content_app(tmp: Path, members: FastAPI) -> FastAPI:
    return create_content(_settings(ContentSettings, tmp, "content"), run_background=False)


def campaigns_app(tmp: Path, members: FastAPI) -> FastAPI:
    client = MembersClient(TOKENS, base_url="", client=_members_client(members))
    settings = _settings(CampaignsSettings, tmp, "campaigns")
    return create_campaigns(settings, run_background=False, members_client=client)


def rewards_app(tmp: Path, members: FastAPI) -> FastAPI:
    return create_rewards(_settings(RewardsSettings, tmp, "rewards"), run_background=False)


def analytics_app(tmp: Path, members: FastAPI) -> FastAPI:
    source = SegmentSource(TOKENS, base_url="", client=_members_client(members))
    settings = _settings(AnalyticsSettings, tmp, "analytics")
    return create_analytics(settings, run_background=False, segment_source=source)


def webhooks_app(tmp: Path, members: FastAPI) -> FastAPI:
    return create_webhooks(_settings(WebhooksSettings, tmp, "webhooks"), run_background=False)


# Campaigns and analytics ask members about segments: each gets the members app in process.
SERVICES: dict[str, Callable[[Path, FastAPI], FastAPI]] = {
    "content": content_app,
    "campaigns": campaigns_app,
    "rewards": rewards_app,
    "analytics": analytics_app,
    "webhooks": webhooks_app,
}


def members_app(tmp: Path) -> FastAPI:
    return create_members(_settings(MembersSettings, tmp, "members"), run_background=False)


def with_lifespans(front: FastAPI, *behind: FastAPI) -> FastAPI:
    """``front``'s lifespan also runs those of the apps it calls: started before, stopped after."""
    own = front.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for other in behind:
                await stack.enter_async_context(other.router.lifespan_context(other))
            await stack.enter_async_context(own(app))
            yield

    front.router.lifespan_context = lifespan
    return front


def service_app(name: str, tmp: Path) -> FastAPI:
    members = members_app(tmp)
    if name == "members":
        return members
    return with_lifespans(SERVICES[name](tmp, members), members)


def gateway_app(tmp: Path) -> FastAPI:
    """The gateway with every upstream client replaced by one on the service app in process."""
    members = members_app(tmp)
    upstreams = {"members": members} | {n: make(tmp, members) for n, make in SERVICES.items()}
    # Fuzzing checks contracts, not rate limits (tests/gateway does): let every request through.
    limits = {"rate_limit_per_min": 10**9, "anonymous_rate_limit_per_min": 10**9}
    settings = GatewaySettings.model_validate(_sqlite(tmp, "gateway") | limits)
    gateway = create_gateway(settings, run_background=False)
    proxy: Gateway = gateway.state.gateway
    for name, app in upstreams.items():
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        client = httpx.AsyncClient(transport=transport, base_url=f"http://{name}")
        proxy.clients[name] = client
        proxy.upstreams[name] = ClientUpstream(client)
    return with_lifespans(gateway, *upstreams.values())


def build(target: str, tmp: Path) -> FastAPI:
    return gateway_app(tmp) if target == "gateway" else service_app(target, tmp)


TARGETS = ["members", *SERVICES, "gateway"]


class Run:
    """What one schemathesis run found, and which operations it actually exercised."""

    def __init__(self) -> None:
        self.findings: set[str] = set()
        self.tested: set[str] = set()

    def record(self, event: events.EngineEvent) -> None:
        if isinstance(event, events.ScenarioFinished):
            if event.label and event.recorder.interactions:
                self.tested.add(event.label)
            for case_id, checks in event.recorder.checks.items():
                for check in checks:
                    if check.failure_info is not None:
                        self.findings.add(self._describe(event, case_id, check))
        elif isinstance(event, events.NonFatalError):
            self.findings.add(f"{event.label} [error] {event.info.format()}")
        elif isinstance(event, events.FatalError):
            self.findings.add(f"[fatal] {event.exception!r}")

    @staticmethod
    def _describe(event: events.ScenarioFinished, case_id: str, check: Any) -> str:
        case = event.recorder.cases[case_id].value
        failure = check.failure_info.failure
        interaction = event.recorder.interactions.get(case_id)
        answer = interaction.response if interaction is not None else None
        got = f"{answer.status_code} {answer.content[:300]!r}" if answer else "no answer"
        return (
            f"{event.label} ({event.phase.value}) [{check.name}] {failure.title}: "
            f"{failure.message}\n    {case.as_curl_command()}\n    -> {got}"
        )


def fuzz(schema: Any) -> Run:
    """Every phase of schemathesis, as ``schemathesis run`` has them."""
    run = Run()
    for event in engine.from_schema(schema).execute():
        run.record(event)
    return run


@pytest.mark.parametrize("target", TARGETS)
def test_every_operation_keeps_its_documented_contract(target: str, tmp_path: Path) -> None:
    app = build(target, tmp_path)
    try:
        # The merged document repeats every service's operations word for word, and each
        # service's run already walked their boundary cases (the coverage phase, minutes on
        # two cores); through the gateway, random and stateful cases test the proxying.
        config = fuzz_config(coverage=target != "gateway")
        schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
        run = fuzz(schema)
    finally:
        # Schemathesis keeps an app's lifespan running until exit; end it with its database file.
        asgi.shutdown_lifespans()
    assert "x-unavailable-services" not in schema.raw_schema["info"]
    operations = {op.ok().label for op in schema.get_all_operations()}
    assert operations, "the document lists no operation"
    assert operations <= run.tested, f"never exercised: {sorted(operations - run.tested)}"
    found = sorted(run.findings)
    assert not found, f"{len(found)} schemathesis findings:\n" + "\n".join(found)
