"""Endpoint signing secrets are sealed at rest; the migration seals the rows it finds."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import select, text

from services.webhooks.models import WebhookEndpoint
from services.webhooks.settings import LOCAL_ENDPOINT_SECRET_KEY, WebhooksSettings
from services.webhooks.signing import new_secret
from shared.db import Database, utcnow
from shared.migrations import upgrade
from tests.conftest import Databases
from tests.webhooks.conftest import OPERATOR, Receiver, Webhooks, verify_standard_webhook

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "webhooks" / "migrations"


async def test_the_secret_is_not_stored_in_the_clear_yet_deliveries_verify(
    webhooks: Webhooks, receiver: Receiver
) -> None:
    created = await webhooks.endpoint(receiver.url("/sealed"), ["member.*"])
    rotated = await webhooks.client.post(
        f"/v1/webhooks/endpoints/{created['id']}/rotate-secret",
        json={"overlap_s": 3600},
        headers=OPERATOR,
    )
    assert rotated.status_code == 200, rotated.text
    old, new = created["secret"], rotated.json()["secret"]
    async with webhooks.runtime.db.session() as session:
        dump = str((await session.execute(text("SELECT * FROM webhook_endpoints"))).all())
    assert old.removeprefix("whsec_") not in dump
    assert new.removeprefix("whsec_") not in dump
    await webhooks.publish("member.registered", {"member_id": "m1"})
    await webhooks.dispatcher.run_once()
    [got] = receiver.at("/sealed")
    assert verify_standard_webhook(old, got)
    assert verify_standard_webhook(new, got)


async def test_the_migration_seals_existing_plaintext_secrets(
    databases: Databases, receiver: Receiver
) -> None:
    from tests.webhooks.conftest import make_webhooks

    url = await databases.new("webhooks")
    db = Database(url)
    await upgrade(db, MIGRATIONS, "0003")
    secret, previous, now = new_secret(), new_secret(), utcnow()
    async with db.session() as session:
        await session.execute(
            text(
                "INSERT INTO webhook_endpoints (id, owner, owner_role, url, description, "
                "event_types, enabled, secret, previous_secret, previous_secret_expires_at, "
                "created_at, updated_at) VALUES ('e1', 'ops', 'operator', :url, '', "
                "'[\"*\"]', :on, :secret, :previous, :later, :now, :now)"
            ),
            {
                "url": receiver.url("/migrated"),
                "on": True,
                "secret": secret,
                "previous": previous,
                "later": now.replace(year=now.year + 1),
                "now": now,
            },
        )
    await upgrade(db, MIGRATIONS)
    async with db.session() as session:
        row = await session.scalar(select(WebhookEndpoint))
        assert row is not None
        sealed = (row.secret_ciphertext, row.previous_secret_ciphertext)
    await db.dispose()
    assert secret not in str(sealed)
    assert previous not in str(sealed)
    # The service opens what the migration sealed: both signatures verify.
    async with make_webhooks(url) as webhooks:
        await webhooks.publish("member.registered", {"member_id": "m1"})
        await webhooks.dispatcher.run_once()
    [got] = receiver.at("/migrated")
    assert verify_standard_webhook(secret, got)
    assert verify_standard_webhook(previous, got)


def test_production_refuses_the_local_secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMMUNITY_PROFILE", "production")
    monkeypatch.setenv("COMMUNITY_JWT_SECRET", "x" * 40)
    with pytest.raises(ValidationError, match="WEBHOOKS_ENDPOINT_SECRET_KEY"):
        WebhooksSettings()
    monkeypatch.setenv("WEBHOOKS_ENDPOINT_SECRET_KEY", LOCAL_ENDPOINT_SECRET_KEY)
    with pytest.raises(ValidationError, match="WEBHOOKS_ENDPOINT_SECRET_KEY"):
        WebhooksSettings()
    monkeypatch.setenv("WEBHOOKS_ENDPOINT_SECRET_KEY", "k" * 40)
    assert WebhooksSettings().profile == "production"
