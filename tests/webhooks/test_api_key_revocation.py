"""Revoking a partner's API key at the gateway disables the webhook endpoints it registered."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import func, select

from services.gateway.app import create_app as create_gateway
from services.gateway.settings import GatewaySettings
from services.webhooks.app import create_app as create_webhooks
from services.webhooks.settings import WebhooksSettings
from shared.app import ServiceRuntime
from shared.auth import Role
from shared.broker import LocalBroker, free_port
from shared.db import outbox_table, utcnow
from shared.events.contracts.gateway import ApiKeyRevoked
from shared.events.topics import GATEWAY
from tests.conftest import Databases, auth, deliver, eventually, read_topic, record_of, running
from tests.webhooks.conftest import OPERATOR, Webhooks

PUBLIC = "https://93.184.215.14/hooks"
PARTNER_SCOPES = frozenset({"webhooks:write", "events:*"})


def partner(key_id: str) -> dict[str, str]:
    """The identity the gateway forwards for requests made with API key ``key_id``."""
    return auth(Role.PARTNER, subject=f"apikey:{key_id}", scopes=PARTNER_SCOPES)


async def endpoint(
    client: httpx.AsyncClient, headers: dict[str, str], event_types: list[str]
) -> dict[str, Any]:
    response = await client.post(
        "/v1/webhooks/endpoints", json={"url": PUBLIC, "event_types": event_types}, headers=headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def read_endpoint(client: httpx.AsyncClient, endpoint_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/webhooks/endpoints/{endpoint_id}", headers=OPERATOR)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def delivered_types(client: httpx.AsyncClient, endpoint_id: str) -> list[str]:
    response = await client.get(
        "/v1/webhooks/deliveries", params={"endpoint_id": endpoint_id}, headers=OPERATOR
    )
    assert response.status_code == 200, response.text
    return sorted(d["event_type"] for d in response.json()["items"])


async def disabled_events(runtime: ServiceRuntime) -> int:
    async with runtime.db.session() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(outbox_table)
            .where(outbox_table.c.type == "webhook.endpoint_disabled")
        )
    return int(count or 0)


async def test_revoking_a_key_disables_its_endpoints_over_the_real_broker(
    databases: Databases, broker: LocalBroker
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    gateway = create_gateway(
        GatewaySettings.model_validate(
            {
                "database_url": await databases.new("gateway"),
                "kafka_bootstrap_servers": broker.bootstrap_servers,
                "relay_poll_interval_s": 0.05,
                "log_json": False,
                **{f"{name}_url": nowhere for name in ("members", "webhooks")},
            }
        )
    )
    webhooks = create_webhooks(
        WebhooksSettings.model_validate(
            {
                "database_url": await databases.new("webhooks"),
                "kafka_bootstrap_servers": broker.bootstrap_servers,
                "relay_poll_interval_s": 0.05,
                "log_json": False,
            }
        ),
        run_background=True,
    )
    async with running(gateway) as gw, running(webhooks) as hooks:
        keys = []
        for name in ("CRM", "Shop"):
            created = await gw.post(
                "/v1/api-keys",
                json={"name": name, "scopes": sorted(PARTNER_SCOPES)},
                headers=OPERATOR,
            )
            assert created.status_code == 201, created.text
            keys.append(created.json()["id"])
        crm, shop = keys
        crm_hooks = [
            await endpoint(hooks, partner(crm), ["member.*"]),
            await endpoint(hooks, partner(crm), ["*"]),
        ]
        shop_hook = await endpoint(hooks, partner(shop), ["*"])
        ops_hook = await endpoint(hooks, OPERATOR, ["api_key.*", "webhook.*"])

        for _ in range(2):  # revoking twice is one revocation
            revoked = await gw.delete(f"/v1/api-keys/{crm}", headers=OPERATOR)
            assert revoked.status_code == 200, revoked.text

        async def crm_hooks_disabled() -> bool:
            states = [await read_endpoint(hooks, h["id"]) for h in crm_hooks]
            return all(not s["enabled"] for s in states)

        await eventually(crm_hooks_disabled, timeout_s=30)
        for hook in crm_hooks:
            state = await read_endpoint(hooks, hook["id"])
            assert "API key 'CRM'" in state["disabled_reason"]
            assert "revoked" in state["disabled_reason"]
        assert (await read_endpoint(hooks, shop_hook["id"]))["enabled"] is True

        # Operators hear of the revocation and of each endpoint it disabled, over the bus.
        expected = ["api_key.revoked", "webhook.endpoint_disabled", "webhook.endpoint_disabled"]

        async def operators_told() -> bool:
            return await delivered_types(hooks, ops_hook["id"]) == expected

        await eventually(operators_told, timeout_s=30)
        # The other partner hears nothing of it; the revoked partner's endpoints are off.
        assert await delivered_types(hooks, shop_hook["id"]) == []
        for hook in crm_hooks:
            assert await delivered_types(hooks, hook["id"]) == []
    records = await read_topic(broker, GATEWAY.name, 2, timeout_s=3)
    assert len(records) == 1


async def test_the_same_revocation_twice_disables_and_announces_once(webhooks: Webhooks) -> None:
    owned = await webhooks.endpoint(PUBLIC, ["*"], headers=partner("k1"))
    other = await webhooks.endpoint(PUBLIC, ["*"], headers=partner("k2"))
    data = ApiKeyRevoked(
        key_id="k1",
        name="CRM",
        principal_subject="apikey:k1",
        revoked_by="ops",
        revoked_at=utcnow(),
    )
    record = record_of(data, "k1", source="/services/gateway")
    await deliver(webhooks.runtime, record, record)
    assert (await read_endpoint(webhooks.client, owned["id"]))["enabled"] is False
    assert (await read_endpoint(webhooks.client, other["id"]))["enabled"] is True
    assert await disabled_events(webhooks.runtime) == 1
    # A second revocation event (another id) finds nothing left to disable.
    await deliver(webhooks.runtime, record_of(data, "k1", source="/services/gateway"))
    assert await disabled_events(webhooks.runtime) == 1
