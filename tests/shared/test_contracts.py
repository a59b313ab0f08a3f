"""Event contracts, the committed catalogue, settings safety."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from services.gateway.settings import GatewaySettings
from services.members.settings import MembersSettings
from shared.events import REGISTRY
from shared.events.catalog import CATALOG_PATH, build_catalog, render_catalog


def test_the_committed_catalogue_matches_the_contracts() -> None:
    assert CATALOG_PATH.read_text() == render_catalog(), (
        "docs/events/asyncapi.json is stale: run `community events catalog --write`"
    )


def test_every_registered_event_type_is_in_the_catalogue() -> None:
    catalog = build_catalog()
    names = {m["name"] for m in catalog["components"]["messages"].values()}
    assert names == set(REGISTRY)
    assert "member.registered" in names
    message = catalog["components"]["messages"]["MemberRegistered"]
    assert message["contentType"] == "application/cloudevents+json"
    json.dumps(catalog)


# A reminder about something still to come cannot be past tense.
FORWARD_LOOKING = {"points.expiring"}
IRREGULAR_PAST = {"spent", "hidden", "left", "drawn", "cast"}


def test_event_names_are_past_tense_aggregate_dot_verb() -> None:
    for name in REGISTRY.keys() - FORWARD_LOOKING:
        aggregate, _, verb = name.partition(".")
        assert aggregate, name
        words = verb.split("_")
        assert any(w.endswith("ed") or w in IRREGULAR_PAST for w in words), name


def test_production_refuses_the_local_jwt_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMMUNITY_PROFILE", "production")
    with pytest.raises(ValidationError, match="COMMUNITY_JWT_SECRET"):
        MembersSettings()
    monkeypatch.setenv("COMMUNITY_JWT_SECRET", "x" * 40)
    with pytest.raises(ValidationError, match="MEMBERS_CONTACT_KEY"):
        MembersSettings()
    monkeypatch.setenv("MEMBERS_CONTACT_KEY", "k" * 40)
    assert MembersSettings().profile == "production"


def test_production_refuses_the_default_admin_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMMUNITY_PROFILE", "production")
    monkeypatch.setenv("COMMUNITY_JWT_SECRET", "x" * 40)
    monkeypatch.setenv("COMMUNITY_ADMIN_PASSWORD", "admin")
    with pytest.raises(ValidationError, match="COMMUNITY_ADMIN_PASSWORD"):
        GatewaySettings()


def test_service_settings_read_their_own_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMBERS_DATABASE_URL", "sqlite+aiosqlite:///tmp/m.db")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
    settings = MembersSettings()
    assert settings.database_url == "sqlite+aiosqlite:///tmp/m.db"
    assert settings.kafka_bootstrap_servers == "kafka:9092"
    assert settings.port == 8001
