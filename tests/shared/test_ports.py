"""Free ports for processes started by the tests and the local runner."""

from __future__ import annotations

import socket
from pathlib import Path

from shared.broker import free_ports
from shared.runner import Platform
from shared.settings import BACKEND_SERVICES


def test_free_ports_are_distinct_bindable_and_skip_the_taken_ones() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        taken = held.getsockname()[1]
        ports = free_ports(64, taken={taken})
    assert len(set(ports)) == 64
    assert taken not in ports
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_platform_on_free_ports_gives_every_service_its_own(tmp_path: Path) -> None:
    """Two services told one port race for it: the loser exits, the winner answers both."""
    for _ in range(20):
        platform = Platform(tmp_path, gateway_port=free_ports(1)[0], free_ports=True)
        assert len(set(platform.ports.values())) == len(BACKEND_SERVICES) + 1
