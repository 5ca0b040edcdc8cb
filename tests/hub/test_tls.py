"""TLS on both listeners, with a certificate made for the test; plain text is refused."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

import grpc
import httpx
import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from aetherfs.errors import InvalidInput
from aetherfs.hub.config import HubConfig
from aetherfs.hub.grpc_gen import hub_pb2 as pb
from aetherfs.hub.grpc_gen import hub_pb2_grpc as pb_grpc
from aetherfs.repository import StoreRepository
from tests.hub.helpers import start_hub


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aetherfs test hub")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "hub.crt", directory / "hub.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_tls_listeners(nursery: trio.Nursery, repo: StoreRepository, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    config = HubConfig(
        listen="127.0.0.1:0",
        grpc_listen="127.0.0.1:0",
        tls_cert=str(cert),
        tls_key=str(key),
    )
    hub = await start_hub(nursery, repo, config)
    assert hub.url.startswith("https://")
    context = ssl.create_default_context(cafile=str(cert))
    async with httpx.AsyncClient(verify=context) as client:
        r = await client.get(f"{hub.url}/v1/info")
        assert r.status_code == 200
    async with httpx.AsyncClient() as client:  # the system trust store does not know it
        with pytest.raises(httpx.ConnectError):
            await client.get(f"{hub.url}/v1/info")
    plain = hub.url.replace("https://", "http://")
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.HTTPError):
            await client.get(f"{plain}/v1/info")

    def grpc_info() -> bytes:
        credentials = grpc.ssl_channel_credentials(cert.read_bytes())
        assert hub.addresses.grpc is not None
        with grpc.secure_channel(hub.addresses.grpc, credentials) as channel:
            stub = pb_grpc.HubStub(channel)  # type: ignore[no-untyped-call]
            reply: pb.InfoReply = stub.Info(pb.InfoRequest(), timeout=10)
            return reply.signer

    assert await trio.to_thread.run_sync(grpc_info) == repo.keyring.signer_public
    hub.cancel.cancel()


def test_plain_text_only_on_loopback() -> None:
    with pytest.raises(InvalidInput):
        HubConfig(listen="0.0.0.0:7070")
    with pytest.raises(InvalidInput):
        HubConfig(grpc_listen="10.1.2.3:7071")
    assert HubConfig(listen="0.0.0.0:7070", insecure=True).insecure
    assert HubConfig(listen="[::1]:7070").listen
    with pytest.raises(InvalidInput):
        HubConfig(tls_cert="a.pem")
