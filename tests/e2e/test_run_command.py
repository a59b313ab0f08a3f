"""`community run` as a user runs it: ready, then Ctrl-C leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from shared.broker import free_port


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_run_starts_everything_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    command = [sys.executable, "-m", "shared.cli", "run", "--data-dir", str(tmp_path / "data")]
    process = subprocess.Popen(
        [*command, "--port", str(port), "--free-ports"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    try:
        output = ""
        deadline = time.monotonic() + 120
        assert process.stdout is not None
        while "Ctrl-C to stop" not in output and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            output += line
        assert "Ctrl-C to stop" in output, output
        assert f"http://127.0.0.1:{port}/docs" in output
        assert "username admin" in output
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
        started = descendants(process.pid)
        assert len(started) >= 8  # broker, six services, gateway

        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0
        left = [pid for pid in started if alive(pid)]
        assert left == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
