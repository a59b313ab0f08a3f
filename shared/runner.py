"""The whole platform as local processes: broker, every service and the gateway.

Used by ``community run`` and by the end-to-end tests, so what developers run
is what the tests prove.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import httpx

from shared.broker import LocalBroker, terminate
from shared.broker import free_ports as pick_free_ports
from shared.settings import BACKEND_SERVICES, SERVICE_PORTS, ServiceSettings, service_url_settings

# Interpreter teardown after a service's own shutdown budget, before we kill it.
STOP_MARGIN_S = 5.0


class Platform:
    def __init__(
        self,
        data_dir: Path,
        *,
        gateway_port: int = SERVICE_PORTS["gateway"],
        free_ports: bool = False,
        bootstrap_servers: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.logs = self.data_dir / "logs"
        self.bootstrap_servers = bootstrap_servers
        self.broker: LocalBroker | None = None
        self.extra_env = dict(env or {})
        ports = (
            pick_free_ports(len(BACKEND_SERVICES), taken={gateway_port})
            if free_ports
            else [SERVICE_PORTS[name] for name in BACKEND_SERVICES]
        )
        self.ports = dict(zip(BACKEND_SERVICES, ports, strict=True))
        self.ports["gateway"] = gateway_port
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.extra_env)
        env["COMMUNITY_DATA_DIR"] = str(self.data_dir)
        env["KAFKA_BOOTSTRAP_SERVERS"] = self.bootstrap_servers or ""
        for name, port in self.ports.items():
            env[f"{name.upper()}_PORT"] = str(port)
            env[f"{name.upper()}_HOST"] = "127.0.0.1"
        env.update(service_url_settings(self.url))
        return env

    def start(self, timeout_s: float = 90.0) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        if self.bootstrap_servers is None:
            self.broker = LocalBroker(log_path=self.logs / "broker.log")
            self.broker.start()
            self.bootstrap_servers = self.broker.bootstrap_servers
        env = self.environment()
        for name in (*BACKEND_SERVICES, "gateway"):
            self.start_service(name, env)
        self.wait_ready(timeout_s)

    def start_service(self, name: str, env: Mapping[str, str] | None = None) -> None:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115
        self._logs.append(log)
        self.processes[name] = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "shared.cli", "serve", name],
            env=dict(env or self.environment()),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us only; we stop children in order
        )

    def wait_ready(self, timeout_s: float, names: tuple[str, ...] | None = None) -> None:
        deadline = time.monotonic() + timeout_s
        pending = list(names or self.processes)
        with httpx.Client(timeout=2.0) as client:
            while pending:
                name = pending[0]
                process = self.processes[name]
                if process.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {process.returncode}; see {self.logs / name}.log"
                    )
                if self._answers_ready(client, name, process.pid):
                    pending.pop(0)
                    continue
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} not ready after {timeout_s}s")
                time.sleep(0.1)

    def _answers_ready(self, client: httpx.Client, name: str, pid: int) -> bool:
        """Whether ``name``'s port answers ready from the process started as ``name``.

        Any other answer (a process of another run on that port, still there while ours
        fails to bind and exits) is not ours: waiting goes on, and the exit is reported.
        """
        try:
            response = client.get(f"{self.url(name)}/readyz")
            body = response.json() if response.status_code == 200 else {}
        except (httpx.HTTPError, ValueError):
            return False
        return isinstance(body, dict) and (body.get("service"), body.get("pid")) == (name, pid)

    def shutdown_grace_s(self) -> float:
        """What each service process gets from SIGTERM to exit (``COMMUNITY_SHUTDOWN_GRACE_S``)."""
        raw = self.environment().get("COMMUNITY_SHUTDOWN_GRACE_S")
        default: float = ServiceSettings.model_fields["shutdown_grace_s"].default
        return float(raw) if raw else default

    def stop_service(self, name: str, grace_s: float | None = None) -> None:
        process = self.processes.pop(name, None)
        if process is not None:
            terminate(
                process, self.shutdown_grace_s() + STOP_MARGIN_S if grace_s is None else grace_s
            )

    def kill_service(self, name: str) -> None:
        """SIGKILL one service, as a crash or an OOM kill would (the fault tests)."""
        process = self.processes.pop(name, None)
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def stop(self) -> None:
        # Gateway first so no new requests arrive, then the services, then the broker.
        for name in ["gateway", *reversed(BACKEND_SERVICES)]:
            self.stop_service(name)
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        for log in self._logs:
            with contextlib.suppress(OSError):
                log.close()
        self._logs.clear()

    def __enter__(self) -> Platform:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
