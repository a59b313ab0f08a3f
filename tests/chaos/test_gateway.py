"""A service behind the gateway is SIGKILLed under traffic: clients get a 503 problem, then recover.

The client waits up to ``CLIENT_TIMEOUT_S`` for each answer; a gateway that hung
on the dead upstream instead of answering 503 would make the client time out
and the test fail. Requests in flight at the kill may also end in 503, never
in a 500 or a dropped connection.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from shared.broker import LocalBroker
from shared.runner import Platform
from tests.chaos.processes import fast_service_env, restart_service, service_processes
from tests.conftest import Databases, eventually

CLIENT_TIMEOUT_S = 10.0
WORKERS = 4
# Answers each worker collects after the kill before the traffic stops.
ANSWERS_AFTER_KILL = 5


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 503


async def traffic_through_a_kill(platform: Platform, client: httpx.AsyncClient) -> list[int]:
    """Registrations from several clients while the members process is SIGKILLed."""
    statuses: list[int] = []
    numbers = itertools.count()
    killed = asyncio.Event()

    async def register() -> None:
        after_kill = 0
        while after_kill < ANSWERS_AFTER_KILL:
            sent_after_kill = killed.is_set()
            try:
                response = await client.post("/v1/members", json={"nickname": f"g{next(numbers)}"})
            except httpx.RemoteProtocolError:
                # The upstream died between its response head and its body: the gateway
                # streams, so the head is already on its way and it can only hang up.
                assert not sent_after_kill, "a request sent after the kill was dropped"
                continue
            statuses.append(response.status_code)
            if response.status_code != 201:
                assert_unavailable(response)
            if killed.is_set():
                after_kill += 1

    async def half_sent_body() -> AsyncIterator[bytes]:
        yield b'{"nickname": '
        await killed.wait()
        yield b'"half-sent"}'

    async def register_across_the_kill() -> None:
        """A request whose body is still on its way through the gateway when the kill lands."""
        response = await client.post(
            "/v1/members", content=half_sent_body(), headers={"content-type": "application/json"}
        )
        statuses.append(response.status_code)
        assert response.status_code == 503, f"half-sent request: {response.text}"
        assert_unavailable(response)

    async def kill() -> None:
        await eventually(lambda: statuses.count(201) >= 20, timeout_s=60, interval_s=0.005)
        straddling = asyncio.create_task(register_across_the_kill())
        await asyncio.sleep(0.2)  # lets the gateway forward the first half upstream
        platform.kill_service("members")
        killed.set()
        await straddling

    await asyncio.gather(kill(), *(register() for _ in range(WORKERS)))
    return statuses


async def test_a_killed_service_gives_quick_503s_and_traffic_recovers_after_restart(
    databases: Databases, broker: LocalBroker, tmp_path: Path
) -> None:
    env = {
        **fast_service_env("members", await databases.new("chaos_members")),
        **fast_service_env("gateway", await databases.new("chaos_gateway")),
        "GATEWAY_ANONYMOUS_RATE_LIMIT_PER_MIN": "100000",
    }
    names = ("members", "gateway")
    with service_processes(tmp_path, broker, names, env) as platform:
        async with httpx.AsyncClient(
            base_url=platform.gateway_url, timeout=CLIENT_TIMEOUT_S
        ) as client:
            statuses = await traffic_through_a_kill(platform, client)
            assert set(statuses) <= {201, 503}, sorted(set(statuses))
            assert 503 in statuses
            # While it stays down every request is refused at once, with a hint to retry.
            for n in range(5):
                response = await client.post("/v1/members", json={"nickname": f"down{n}"})
                assert_unavailable(response)
                assert response.headers["retry-after"] == "1"
            restart_service(platform, "members")
            for n in range(10):
                response = await client.post("/v1/members", json={"nickname": f"back{n}"})
                assert response.status_code == 201, response.text
