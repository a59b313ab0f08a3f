"""``Platform.wait_ready`` counts a service ready only when its own process answers."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from shared.broker import terminate
from shared.runner import Platform


@pytest.fixture
def idle_process() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that answers nothing, as a service still starting up."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    terminate(process, 5.0)


def ready_server(answer: dict[str, Any]) -> ThreadingHTTPServer:
    """Answers every GET with 200 and ``answer``, as some service's /readyz would."""

    class Ready(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ready)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.parametrize(
    "answer",
    [
        {"status": "ready"},  # an answer that names nobody
        {"status": "ready", "service": "content", "pid": None},  # another service
        {"status": "ready", "service": "members", "pid": -1},  # members of another run
    ],
    ids=["anonymous", "other-service", "other-process"],
)
def test_a_ready_answer_from_another_process_is_not_the_service_being_ready(
    tmp_path: Path, idle_process: subprocess.Popen[bytes], answer: dict[str, Any]
) -> None:
    server = ready_server(answer)
    try:
        platform = Platform(tmp_path, gateway_port=1, free_ports=True)
        platform.ports["members"] = server.server_address[1]
        platform.processes["members"] = idle_process
        with pytest.raises(TimeoutError, match="members not ready"):
            platform.wait_ready(0.5, ("members",))
    finally:
        server.shutdown()
        server.server_close()


def test_the_service_is_ready_when_its_own_process_answers(
    tmp_path: Path, idle_process: subprocess.Popen[bytes]
) -> None:
    server = ready_server({"status": "ready", "service": "members", "pid": idle_process.pid})
    try:
        platform = Platform(tmp_path, gateway_port=1, free_ports=True)
        platform.ports["members"] = server.server_address[1]
        platform.processes["members"] = idle_process
        platform.wait_ready(10.0, ("members",))
    finally:
        server.shutdown()
        server.server_close()
