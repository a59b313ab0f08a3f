"""The `community` command line."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest
import uvicorn
from typer.testing import CliRunner

from services.analytics.app import create_app as create_analytics
from services.analytics.settings import AnalyticsSettings
from shared.auth import Role
from shared.broker import free_port
from shared.cli import app
from shared.events.catalog import render_catalog
from shared.events.contracts.members import MemberRegistered
from tests.analytics.conftest import Analytics, at
from tests.conftest import Databases, running, token_for

runner = CliRunner()


def test_migrate_creates_a_service_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "members.db"
    monkeypatch.setenv("MEMBERS_DATABASE_URL", f"sqlite+aiosqlite:///{path}")
    result = runner.invoke(app, ["migrate", "members"])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"members", "outbox", "inbox", "idempotency_keys", "alembic_version"} <= tables


def test_migrate_refuses_an_unknown_service() -> None:
    result = runner.invoke(app, ["migrate", "billing"])
    assert result.exit_code != 0
    assert "unknown service" in result.output


def test_events_catalog_prints_the_generated_catalogue() -> None:
    result = runner.invoke(app, ["events", "catalog"])
    assert result.exit_code == 0
    assert result.stdout == render_catalog()


@pytest.fixture
async def analytics_url(databases: Databases) -> AsyncIterator[str]:
    """The analytics service on a real socket, with a few events in its raw store."""
    settings = AnalyticsSettings.model_validate(
        {"database_url": await databases.new("analytics"), "log_json": False}
    )
    application = create_analytics(settings, run_background=False)
    async with running(application) as client:
        analytics = Analytics(client, application.state.runtime)
        for n in range(12):
            registered_at = at(date(2026, 3, 2))
            await analytics.apply(
                MemberRegistered(
                    member_id=f"m{n}", nickname="fan", channel="app", registered_at=registered_at
                )
            )
        port = free_port()
        config = uvicorn.Config(
            application, host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        for _ in range(1000):  # uvicorn offers no event for "listening"
            if server.started:
                break
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
        server.should_exit = True
        await task


async def test_analytics_rebuild_shows_progress_until_the_rollups_are_rebuilt(
    analytics_url: str,
) -> None:
    token = token_for(Role.OPERATOR)
    args = ["analytics", "rebuild", "--url", analytics_url, "--token", token]
    # The command blocks while it polls: off the event loop the server runs on.
    result = await asyncio.to_thread(runner.invoke, app, [*args, "--batch-size", "5"])
    assert result.exit_code == 0, result.output
    assert "rebuilt the rollups from 12 events" in result.output
    assert "12/12" in result.output  # the progress bar's last state


async def test_analytics_rebuild_fails_clearly_without_an_operator(analytics_url: str) -> None:
    member = token_for(Role.MEMBER)
    args = ["analytics", "rebuild", "--url", analytics_url, "--token", member]
    result = await asyncio.to_thread(runner.invoke, app, args)
    assert result.exit_code == 1
    assert "403" in result.output
    assert "operator" in result.output
