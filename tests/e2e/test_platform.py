"""The whole platform as processes, through the gateway, on a real broker (what `make run` runs)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.broker import free_port
from shared.runner import Platform
from shared.settings import SERVICE_PORTS
from tests.conftest import create_pg_database, drop_pg_database, pg_url


@pytest.fixture(scope="module")
def platform(db_lane: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """On the PostgreSQL lane every service gets a fresh database of its own."""
    data = tmp_path_factory.mktemp("platform")
    env: dict[str, str] = {}
    names = [f"t_e2e_{service}_{uuid.uuid4().hex[:8]}" for service in SERVICE_PORTS]
    if db_lane == "postgresql":
        for service, name in zip(SERVICE_PORTS, names, strict=True):
            asyncio.run(create_pg_database(name))
            env[f"{service.upper()}_DATABASE_URL"] = pg_url(name)
    try:
        with Platform(data, gateway_port=free_port(), free_ports=True, env=env) as running:
            running.lane = db_lane  # type: ignore[attr-defined]
            yield running
    finally:
        if env:
            for name in names:
                asyncio.run(drop_pg_database(name))


@pytest.fixture(scope="module")
def client(platform: Platform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=platform.gateway_url, timeout=10) as http:
        yield http


@pytest.fixture(scope="module")
def operator(client: httpx.Client) -> dict[str, str]:
    response = client.post("/v1/auth/token", data={"username": "admin", "password": "admin"})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_every_service_is_ready_and_keeps_its_data_under_the_data_folder(
    platform: Platform, client: httpx.Client
) -> None:
    assert client.get("/readyz").status_code == 200
    for service, process in platform.processes.items():
        ready = httpx.get(f"{platform.url(service)}/readyz").json()
        assert (ready["status"], ready["service"], ready["pid"]) == ("ready", service, process.pid)
    files = {p.name for p in Path(platform.data_dir).glob("*.db")}
    on_sqlite = platform.lane == "sqlite"  # type: ignore[attr-defined]
    assert files == ({f"{s}.db" for s in platform.ports} if on_sqlite else set())


def test_merged_openapi_lists_every_service_route(client: httpx.Client) -> None:
    doc = client.get("/openapi.json").json()
    assert {"/v1/members", "/v1/metrics/overview", "/v1/auth/token", "/v1/api-keys"} <= set(
        doc["paths"]
    )
    assert "x-unavailable-services" not in doc["info"]
    assert client.get("/docs").status_code == 200
    dashboard = client.get("/dashboard")
    assert dashboard.status_code == 200
    assert dashboard.headers["content-type"].startswith("text/html")


def test_a_registration_through_the_gateway_reaches_the_overview(
    client: httpx.Client, operator: dict[str, str]
) -> None:
    before = client.get("/v1/metrics/overview", headers=operator)
    assert before.status_code == 200, before.text
    registered = client.post(
        "/v1/members",
        json={"nickname": "Mei", "channel": "weibo"},
        headers={"X-Request-ID": "e2e-1"},
    )
    assert registered.status_code == 201, registered.text
    assert registered.headers["x-request-id"] == "e2e-1"
    expected = before.json()["members"]["total"] + 1
    deadline = time.monotonic() + 60
    total = None
    while time.monotonic() < deadline:
        total = client.get("/v1/metrics/overview", headers=operator).json()["members"]["total"]
        if total == expected:
            break
        time.sleep(0.2)
    assert total == expected


def test_services_expose_outbox_and_consumer_metrics(
    platform: Platform, client: httpx.Client
) -> None:
    assert client.post("/v1/members", json={"nickname": "Metrics"}).status_code == 201
    members = httpx.get(f"{platform.url('members')}/metrics").text
    assert 'outbox_lag_seconds{service="members"}' in members
    assert 'http_request_duration_seconds_count{method="POST",route="/v1/members"' in members

    def applied() -> float:
        text = httpx.get(f"{platform.url('analytics')}/metrics").text
        for line in text.splitlines():
            if line.startswith("consumer_events_total{") and 'outcome="applied"' in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    deadline = time.monotonic() + 30
    while applied() < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert applied() >= 1


def test_members_get_403_on_operator_metrics(client: httpx.Client) -> None:
    member = client.post("/v1/members", json={"nickname": "Lin"}).json()
    from shared.auth import Principal, Role, TokenCodec
    from shared.settings import LOCAL_JWT_SECRET

    token = TokenCodec(LOCAL_JWT_SECRET).issue(Principal(member["id"], Role.MEMBER))
    response = client.get("/v1/metrics/overview", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"


def test_a_member_signs_in_through_the_gateway_and_sees_only_itself(
    client: httpx.Client,
) -> None:
    mei = client.post(
        "/v1/members",
        json={"nickname": "Mei", "email": "mei@example.com", "password": "tea with lemon"},
    ).json()
    other = client.post("/v1/members", json={"nickname": "Other"}).json()
    token = client.post(
        "/v1/auth/token", data={"username": "MEI@example.com", "password": "tea with lemon"}
    )
    assert token.status_code == 200, token.text
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    mine = client.get(f"/v1/members/{mei['id']}", headers=headers)
    assert mine.json()["email"] == "mei@example.com"
    assert client.get(f"/v1/members/{other['id']}", headers=headers).status_code == 403
    wrong = client.post(
        "/v1/auth/token", data={"username": "mei@example.com", "password": "coffee"}
    )
    assert wrong.status_code == 401
    internal = client.post(
        "/internal/v1/members/authenticate",
        json={"username": "mei@example.com", "password": "tea with lemon"},
        headers=headers,
    )
    assert internal.status_code == 404, "the gateway never exposes the internal sign-in check"


def test_a_killed_service_gives_503_quickly_and_recovers(
    platform: Platform, client: httpx.Client
) -> None:
    platform.stop_service("members")
    started = time.monotonic()
    response = client.post("/v1/members", json={"nickname": "Zoe"})
    assert response.status_code == 503
    assert time.monotonic() - started < 5
    platform.start_service("members")
    platform.wait_ready(60, ("members",))
    assert client.post("/v1/members", json={"nickname": "Zoe"}).status_code == 201
