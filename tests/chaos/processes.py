"""Real processes for the fault tests: an S3 server as durable broker storage, service processes.

The broker's default memory storage forgets everything on a restart, which would
make "nothing committed is lost" untestable; Tansu on S3 storage (here moto's S3
server, a separate process) keeps topics, records and committed offsets across a
``kill -9``, like a Kafka broker keeps its log on disk.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.broker import LocalBroker, free_port, port_open, terminate
from shared.runner import Platform

BUCKET = "tansu"
# Quick relay and consumer reactions and a short stop keep the fault tests short.
FAST_ENV = {
    "COMMUNITY_SHUTDOWN_GRACE_S": "4",
    "COMMUNITY_LOG_JSON": "false",
}


def fast_service_env(service: str, database_url: str) -> dict[str, str]:
    prefix = service.upper()
    return {
        **FAST_ENV,
        f"{prefix}_DATABASE_URL": database_url,
        f"{prefix}_RELAY_POLL_INTERVAL_S": "0.05",
        f"{prefix}_RELAY_MAX_BACKOFF_S": "1",
        f"{prefix}_CONSUMER_RETRY_BACKOFF_S": "0.05",
    }


@contextmanager
def s3_server(log_path: Path, timeout_s: float = 30.0) -> Iterator[dict[str, str]]:
    """An S3 server with one bucket; yields the environment Tansu needs to use it."""
    port = free_port()
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + timeout_s
            while not port_open("127.0.0.1", port):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the S3 server did not start; see {log_path}")
                time.sleep(0.05)
            endpoint = f"http://127.0.0.1:{port}"
            httpx.put(f"{endpoint}/{BUCKET}").raise_for_status()
            yield {
                "AWS_ACCESS_KEY_ID": "chaos",
                "AWS_SECRET_ACCESS_KEY": "chaos",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ENDPOINT": endpoint,
                "AWS_ALLOW_HTTP": "true",
            }
        finally:
            terminate(process)


def durable_broker(log_path: Path, s3_env: Mapping[str, str]) -> LocalBroker:
    return LocalBroker(log_path=log_path, storage_engine=f"s3://{BUCKET}/", env=s3_env)


@contextmanager
def service_processes(
    data_dir: Path, broker: LocalBroker, names: tuple[str, ...], env: Mapping[str, str]
) -> Iterator[Platform]:
    """Some of the platform's services as real processes on ``broker``; stopped at the end."""
    platform = Platform(
        data_dir,
        gateway_port=free_port(),
        free_ports=True,
        bootstrap_servers=broker.bootstrap_servers,
        env=env,
    )
    platform.logs.mkdir(parents=True, exist_ok=True)
    try:
        for name in names:
            platform.start_service(name)
        platform.wait_ready(90, names)
        yield platform
    finally:
        platform.stop()


def restart_service(platform: Platform, name: str) -> None:
    platform.start_service(name)
    platform.wait_ready(90, (name,))


async def count(engine: AsyncEngine, sql: str) -> int:
    """One number from a service's database, read beside the running service."""
    async with engine.connect() as conn:
        return int((await conn.exec_driver_sql(sql)).scalar() or 0)
