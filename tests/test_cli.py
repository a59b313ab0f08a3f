"""The `community` command line."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shared.cli import app
from shared.events.catalog import render_catalog

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
