"""PostgreSQL connections dropped under a service: clean 503s meanwhile, then full recovery."""

from __future__ import annotations

import asyncio
import contextlib

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.members.app import create_app
from services.members.settings import MembersSettings
from tests.conftest import PG_ADMIN_URL, Databases, running


async def terminate_connections(database: str) -> int:
    admin = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            result = await conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": database},
            )
            return int(result.scalar() or 0)
    finally:
        await admin.dispose()


async def test_dropped_connections_fail_cleanly_and_the_pool_recovers(
    pg_databases: Databases,
) -> None:
    url = await pg_databases.new("chaosdb")
    settings = MembersSettings.model_validate({"database_url": url, "log_json": False})
    async with running(create_app(settings, run_background=False)) as client:
        statuses: list[int] = []
        stop = asyncio.Event()

        async def traffic() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                response = await client.post("/v1/members", json={"nickname": f"c{n}"})
                statuses.append(response.status_code)
                if response.status_code == 503:
                    assert response.headers["content-type"] == "application/problem+json"
                    assert response.headers["retry-after"] == "1"

        workers = [asyncio.create_task(traffic()) for _ in range(4)]
        killed = 0
        for _ in range(5):
            await asyncio.sleep(0.2)
            killed += await terminate_connections(url.rsplit("/", 1)[1])
        stop.set()
        await asyncio.gather(*workers)
        assert killed > 0, "the test never dropped a connection"
        assert set(statuses) <= {201, 503}, sorted(set(statuses))
        assert 201 in statuses
        # After the storm every request succeeds again: the pool replaced its connections.
        for n in range(10):
            response = await client.post("/v1/members", json={"nickname": f"after{n}"})
            assert response.status_code == 201, response.text
        with contextlib.suppress(Exception):
            await terminate_connections(url.rsplit("/", 1)[1])
