"""Fresh PostgreSQL databases for a bench run, created on a server and dropped afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

PG_ADMIN = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


@asynccontextmanager
async def fresh_databases(
    names: Sequence[str], server_url: str = PG_ADMIN
) -> AsyncIterator[list[str]]:
    """New databases ``names`` on the server of ``server_url`` (its own database is only
    where they are created from); yields their URLs in order, drops them on the way out."""
    server = make_url(server_url)
    admin = create_async_engine(
        server.set(database="postgres").render_as_string(hide_password=False),
        isolation_level="AUTOCOMMIT",
    )
    created: list[str] = []
    try:
        async with admin.connect() as conn:
            for name in names:
                await conn.execute(text(f'CREATE DATABASE "{name}"'))
                created.append(name)
        yield [server.set(database=name).render_as_string(hide_password=False) for name in names]
    finally:
        async with admin.connect() as conn:
            for name in created:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()
