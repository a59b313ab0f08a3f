from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.gateway import events
from services.gateway.models import ApiKey, StaffAccount
from services.gateway.repository import ApiKeyRepository, StaffRepository
from services.gateway.schemas import ApiKeyCreate
from shared.auth import Principal, Role, hash_api_key, new_api_key
from shared.db import utcnow
from shared.errors import Conflict, NotFound, Unauthorized
from shared.passwords import hash_password, verify_password_async

LAST_USED_RESOLUTION = timedelta(minutes=1)


def api_key_subject(key_id: str) -> str:
    """The principal subject of requests made with an API key (owner of what they create)."""
    return f"apikey:{key_id}"


class InvalidCredentials(Unauthorized):
    code, title = "invalid-credentials", "Invalid credentials"


class ApiKeyNotFound(NotFound):
    title = "API key not found"


class ApiKeyRevoked(Conflict):
    code, title = "api-key-revoked", "API key revoked"


class GatewayService:
    async def ensure_staff(
        self, session: AsyncSession, username: str, password: str, role: Role
    ) -> StaffAccount:
        repo = StaffRepository(session)
        account = await repo.by_username(username)
        if account is None:
            account = StaffAccount(
                id=str(uuid.uuid4()),
                username=username,
                password_hash=hash_password(password),
                role=role.value,
                communities=[],
                created_at=utcnow(),
            )
            await repo.add(account)
        return account

    async def authenticate_staff(
        self, session: AsyncSession, username: str, password: str
    ) -> Principal:
        account = await StaffRepository(session).by_username(username)
        if account is None or not await verify_password_async(password, account.password_hash):
            raise InvalidCredentials("Unknown username or wrong password")
        return Principal(
            subject=account.id,
            role=Role(account.role),
            name=account.username,
            communities=frozenset(account.communities),
        )

    async def create_api_key(
        self, session: AsyncSession, creator: Principal, data: ApiKeyCreate
    ) -> tuple[ApiKey, str]:
        key, prefix = new_api_key()
        record = ApiKey(
            id=str(uuid.uuid4()),
            name=data.name,
            prefix=prefix,
            key_hash=hash_api_key(key),
            scopes=sorted(set(data.scopes)),
            created_by=creator.name or creator.subject,
            created_at=utcnow(),
        )
        await ApiKeyRepository(session).add(record)
        return record, key

    async def list_api_keys(self, session: AsyncSession) -> list[ApiKey]:
        return await ApiKeyRepository(session).list()

    async def revoke_api_key(
        self, session: AsyncSession, key_id: str, revoker: Principal
    ) -> ApiKey:
        """Revoke once; ``api_key.revoked`` tells the services holding what the key set up
        (webhooks disables the partner's endpoints). Revoking again changes nothing."""
        record = await ApiKeyRepository(session).get(key_id)
        if record is None:
            raise ApiKeyNotFound(f"No API key with id {key_id}")
        if record.revoked_at is None:
            record.revoked_at = utcnow()
            await session.flush()
            await events.api_key_revoked(
                session, record, api_key_subject(record.id), revoker.name or revoker.subject
            )
        return record

    async def rotate_api_key(
        self, session: AsyncSession, key_id: str, overlap: timedelta
    ) -> tuple[ApiKey, str]:
        """A new secret for the key; the current one keeps working for ``overlap``.

        Only the secret being replaced overlaps: a second rotation ends the first
        one's overlap at once, so at most two secrets are ever valid.
        """
        record = await ApiKeyRepository(session).get(key_id)
        if record is None:
            raise ApiKeyNotFound(f"No API key with id {key_id}")
        if record.revoked_at is not None:
            raise ApiKeyRevoked(f"API key {key_id} is revoked; create a new one")
        key, prefix = new_api_key()
        now = utcnow()
        record.previous_key_hash = record.key_hash if overlap > timedelta(0) else None
        record.previous_expires_at = now + overlap if overlap > timedelta(0) else None
        record.key_hash = hash_api_key(key)
        record.prefix = prefix
        record.rotated_at = now
        await session.flush()
        return record, key

    async def authenticate_api_key(self, session: AsyncSession, key: str) -> Principal:
        key_hash = hash_api_key(key)
        record = await ApiKeyRepository(session).by_hash(key_hash)
        if record is None or record.revoked_at is not None:
            raise Unauthorized("The API key is unknown or revoked")
        now = utcnow()
        if record.key_hash != key_hash and (
            record.previous_expires_at is None or record.previous_expires_at <= now
        ):
            raise Unauthorized("The API key was rotated and its overlap period is over")
        last = record.last_used_at
        if last is None or now - last > LAST_USED_RESOLUTION:
            record.last_used_at = now
        return Principal(
            subject=api_key_subject(record.id),
            role=Role.PARTNER,
            name=record.name,
            scopes=frozenset(record.scopes),
        )


gateway_service = GatewayService()
