from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.gateway.models import ApiKey, StaffAccount


class StaffRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_username(self, username: str) -> StaffAccount | None:
        return await self.session.scalar(
            select(StaffAccount).where(StaffAccount.username == username)
        )

    async def add(self, account: StaffAccount) -> None:
        self.session.add(account)
        await self.session.flush()


class ApiKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_hash(self, key_hash: str) -> ApiKey | None:
        """The key whose current secret, or secret replaced by a rotation, has this hash."""
        return await self.session.scalar(
            select(ApiKey).where(
                or_(ApiKey.key_hash == key_hash, ApiKey.previous_key_hash == key_hash)
            )
        )

    async def get(self, key_id: str) -> ApiKey | None:
        return await self.session.get(ApiKey, key_id)

    async def list(self) -> list[ApiKey]:
        return list(await self.session.scalars(select(ApiKey).order_by(ApiKey.created_at.desc())))

    async def add(self, key: ApiKey) -> None:
        self.session.add(key)
        await self.session.flush()
