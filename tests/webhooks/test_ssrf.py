"""Webhook targets inside our network are refused at registration and again at connect time."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpcore
import httpx
import pytest

from services.webhooks.service import InvalidEndpointUrl, webhook_service
from services.webhooks.ssrf import GuardedBackend, GuardedTransport, TargetBlocked, TargetPolicy
from tests.conftest import Databases
from tests.webhooks.conftest import OPERATOR, Receiver, Webhooks, make_webhooks, webhooks_settings

# Each names a loopback, private, link-local, metadata, CGNAT, multicast or unspecified
# address, directly or in another spelling. {port} is the local receiver's port.
BLOCKED = [
    "http://127.0.0.1:{port}/hook",
    "http://127.1:{port}/hook",
    "http://2130706433:{port}/hook",
    "http://0x7f000001:{port}/hook",
    "http://0x7f.0.0.1:{port}/hook",
    "http://localhost:{port}/hook",
    "http://[::1]:{port}/hook",
    "http://[::ffff:127.0.0.1]:{port}/hook",
    "http://[::ffff:7f00:1]:{port}/hook",
    "http://10.0.0.1/hook",
    "http://172.16.5.4/hook",
    "http://192.168.1.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/",
    "http://100.64.0.1/hook",
    "http://0.0.0.0/hook",
    "http://[::]/hook",
    "http://224.0.0.1/hook",
    "http://[ff02::1]/hook",
    "http://[fe80::1]/hook",
    "http://[fd00::1]/hook",
    "http://[::ffff:10.0.0.1]/hook",
    "http://[64:ff9b::7f00:1]/hook",
    "http://[2002:7f00:1::]/hook",
]


@pytest.fixture
async def guarded() -> AsyncIterator[httpx.AsyncClient]:
    transport = GuardedTransport(TargetPolicy(allow_private=False))
    async with httpx.AsyncClient(transport=transport, timeout=2.0) as client:
        yield client


@pytest.fixture
async def strict(databases: Databases) -> AsyncIterator[Webhooks]:
    async with make_webhooks(await databases.new("webhooks"), allow_private_targets=False) as hooks:
        yield hooks


async def test_every_blocked_target_is_refused_at_registration(
    strict: Webhooks, receiver: Receiver
) -> None:
    admitted = []
    for template in [*BLOCKED, "http://0177.0.0.1/hook"]:
        url = template.format(port=receiver.port)
        response = await strict.client.post(
            "/v1/webhooks/endpoints", json={"url": url, "event_types": ["*"]}, headers=OPERATOR
        )
        if response.status_code != 422 or response.json()["errors"][0]["field"] != "body.url":
            admitted.append((url, response.status_code))
    assert admitted == []
    listed = await strict.client.get("/v1/webhooks/endpoints", headers=OPERATOR)
    assert listed.json()["items"] == []


@pytest.mark.parametrize("template", BLOCKED)
async def test_a_blocked_target_is_refused_at_connect_time(
    guarded: httpx.AsyncClient, receiver: Receiver, template: str
) -> None:
    url = template.format(port=receiver.port)
    try:
        httpx.URL(url)
    except httpx.InvalidURL:
        refused: type[Exception] = httpx.InvalidURL  # httpx refuses the spelling itself
    else:
        refused = TargetBlocked
    with pytest.raises(refused):
        await guarded.post(url, content=b"{}")
    assert receiver.received == []


async def test_a_name_rebound_to_loopback_after_registration_is_refused_at_connect_time(
    receiver: Receiver,
) -> None:
    async def rebound(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    async def mixed(host: str, port: int) -> list[str]:
        return ["93.184.215.14", "127.0.0.1"]

    for resolver in (rebound, mixed):
        transport = GuardedTransport(TargetPolicy(), resolver=resolver)
        async with httpx.AsyncClient(transport=transport) as client:
            with pytest.raises(TargetBlocked):
                await client.post(f"http://partner.example:{receiver.port}/hook", content=b"{}")
    assert receiver.received == []


async def test_the_connection_goes_to_the_address_that_was_checked(receiver: Receiver) -> None:
    resolved: list[str] = []

    async def once(host: str, port: int) -> list[str]:
        resolved.append(host)
        return ["127.0.0.1"]

    transport = GuardedTransport(TargetPolicy(allow_private=True), resolver=once)
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.post(f"http://partner.example:{receiver.port}/hook", content=b"x")
    assert response.status_code == 200
    assert resolved == ["partner.example"]  # resolved once, by us
    assert receiver.received[0].headers["host"] == f"partner.example:{receiver.port}"


async def test_an_operator_allow_list_admits_a_private_network(
    databases: Databases, receiver: Receiver
) -> None:
    url = await databases.new("webhooks")
    async with make_webhooks(
        url, allow_private_targets=False, private_target_allowlist=["127.0.0.0/8"]
    ) as hooks:
        await hooks.endpoint(receiver.url("/allowed"))
        await hooks.publish("member.registered", {"member_id": "m1"})
        assert await hooks.dispatcher.run_once() == 1
    assert len(receiver.at("/allowed")) == 1


async def test_production_accepts_https_only(databases: Databases) -> None:
    settings = webhooks_settings(
        await databases.new("webhooks"),
        profile="production",
        jwt_secret="x" * 40,
        endpoint_secret_key="k" * 40,
        allow_private_targets=False,
    )
    with pytest.raises(InvalidEndpointUrl):
        await webhook_service.check_url("http://93.184.215.14/hook", settings)
    await webhook_service.check_url("https://93.184.215.14/hook", settings)
    with pytest.raises(InvalidEndpointUrl):
        await webhook_service.check_url("https://10.1.2.3/hook", settings)
    with pytest.raises(InvalidEndpointUrl):
        await webhook_service.check_url("ftp://93.184.215.14/hook", settings)
    with pytest.raises(InvalidEndpointUrl):
        await webhook_service.check_url("https://user:pw@93.184.215.14/hook", settings)


async def test_the_dispatcher_refuses_a_name_rebound_to_loopback_at_connect_time(
    databases: Databases, receiver: Receiver
) -> None:
    async def rebound(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    url = await databases.new("webhooks")
    async with make_webhooks(url, resolver=rebound, allow_private_targets=False) as hooks:
        # partner.example has no address yet: accepted; connect time is the gate.
        await hooks.endpoint(f"http://partner.example:{receiver.port}/hook")
        await hooks.publish("member.registered", {"member_id": "m1"})
        assert await hooks.dispatcher.run_once() == 1
        [delivery] = await hooks.deliveries()
    assert delivery["status"] == "pending"
    assert "target blocked" in delivery["last_error"]
    assert receiver.received == []


async def test_the_dispatcher_connects_to_the_checked_address_and_keeps_the_connection(
    databases: Databases, receiver: Receiver
) -> None:
    resolved: list[str] = []

    async def once(host: str, port: int) -> list[str]:
        resolved.append(host)
        return ["127.0.0.1"]

    url = await databases.new("webhooks")
    async with make_webhooks(url, resolver=once) as hooks:
        await hooks.endpoint(f"http://partner.example:{receiver.port}/hook")
        for n in range(2):
            await hooks.publish("member.registered", {"member_id": f"m{n}"})
            assert await hooks.dispatcher.run_once() == 1
    assert resolved == ["partner.example"]  # one connection, checked once, reused
    assert [r.headers["host"] for r in receiver.at("/hook")] == [
        f"partner.example:{receiver.port}"
    ] * 2


def self_signed(host: str) -> tuple[bytes, bytes]:
    """A certificate for ``host`` (an IP address) and its key, PEM."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


async def test_the_guarded_backend_speaks_tls_over_kept_alive_connections(tmp_path: Path) -> None:
    cert, key = self_signed("127.0.0.1")
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    trusted = ssl.create_default_context(cadata=cert.decode())
    bodies: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                await reader.readuntil(b"\r\n\r\n")
                bodies.append(await reader.readexactly(5))
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=served)
    port = server.sockets[0].getsockname()[1]
    backend = GuardedBackend(TargetPolicy(allow_private=True))
    async with (
        server,
        httpcore.AsyncConnectionPool(ssl_context=trusted, network_backend=backend) as pool,
    ):
        for _ in range(2):
            response = await pool.request(
                "POST", f"https://127.0.0.1:{port}/hook", content=b"hello"
            )
            assert (response.status, response.content) == (200, b"ok")
        assert len(pool.connections) == 1
    assert bodies == [b"hello", b"hello"]
