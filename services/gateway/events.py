"""Events the gateway publishes; their data models live in shared.events.contracts."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.gateway.models import ApiKey
from shared.events.contracts.gateway import ApiKeyRevoked
from shared.outbox import add_event

SOURCE = "/services/gateway"


async def api_key_revoked(
    session: AsyncSession, key: ApiKey, principal_subject: str, revoked_by: str
) -> None:
    assert key.revoked_at is not None
    data = ApiKeyRevoked(
        key_id=key.id,
        name=key.name,
        principal_subject=principal_subject,
        revoked_by=revoked_by,
        revoked_at=key.revoked_at,
    )
    await add_event(session, data, subject=key.id, source=SOURCE)
