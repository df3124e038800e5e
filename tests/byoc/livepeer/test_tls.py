"""Self-signed TLS: certificate contents, and trickle over HTTPS with and without verification."""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509

from byoc.livepeer.standin.trickle_server import TrickleServer
from byoc.livepeer.tls import client_ssl, generate_self_signed, server_ssl_context
from byoc.livepeer.trickle import SubscribeError, TricklePublisher, TrickleSubscriber


def test_certificate_names_and_key():
    cert = generate_self_signed(["localhost", "127.0.0.1", "orch.example"])
    parsed = x509.load_pem_x509_certificate(cert.cert_pem)
    san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "orch.example"}
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert b"PRIVATE KEY" in cert.key_pem
    assert generate_self_signed().cert_pem != cert.cert_pem  # a fresh key every time


def test_server_context_from_files(tmp_path: Path):
    cert = generate_self_signed()
    (tmp_path / "c.pem").write_bytes(cert.cert_pem)
    (tmp_path / "k.pem").write_bytes(cert.key_pem)
    ctx = server_ssl_context(cert_file=str(tmp_path / "c.pem"), key_file=str(tmp_path / "k.pem"))
    assert isinstance(ctx, ssl.SSLContext)


def test_client_ssl_values():
    assert client_ssl(False) is False
    assert client_ssl(True) is True
    ctx = client_ssl(True, ca_pem=generate_self_signed().cert_pem)
    assert isinstance(ctx, ssl.SSLContext) and ctx.verify_mode == ssl.CERT_REQUIRED


@pytest.fixture
async def https_server():
    cert = generate_self_signed()
    server = TrickleServer()
    await server.start("127.0.0.1", 0, ssl=server_ssl_context(cert))
    yield server, cert
    await server.close()


async def test_trickle_over_https_without_verification(https_server):
    server, _cert = https_server
    assert server.base_url.startswith("https://127.0.0.1:")
    server.create_channel("c", "video/MP2T")
    url = server.channel_url("c")
    async with (
        TricklePublisher(url, "video/mp2t", verify_tls=False) as pub,
        TrickleSubscriber(url, start_seq=-1, verify_tls=False) as sub,
    ):
        async with pub.segment() as seg:
            await seg.write(b"secret bytes")
        segment = await sub.next_segment()
        assert segment is not None and await segment.read_all() == b"secret bytes"


async def test_verification_on_refuses_self_signed(https_server):
    server, cert = https_server
    server.create_channel("c")
    url = server.channel_url("c")
    strict = TrickleSubscriber(url, max_retries=1, retry_backoff=0.01)  # verifies by default
    with pytest.raises(SubscribeError, match=r"(?i)certificate"):
        await strict.next_segment()
    await strict.close()
    pinned = client_ssl(True, ca_pem=cert.cert_pem)
    async with TricklePublisher(url, "video/mp2t", ssl=pinned, delete_on_close=False) as pub:
        async with pub.segment() as seg:
            await seg.write(b"trusted")
        assert await seg.wait()
    async with aiohttp.ClientSession() as http:
        async with http.get(url + "/0", ssl=pinned) as resp:
            assert await resp.read() == b"trusted"
