"""Self-signed TLS for local HTTPS servers, and client TLS settings for orchestrators.

Livepeer orchestrators usually serve HTTPS with a self-signed certificate, so clients talking to
them turn verification off; our local stand-in can serve HTTPS the same way.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

DEFAULT_HOSTNAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class SelfSignedCert:
    """A PEM certificate and its unencrypted PEM private key."""

    cert_pem: bytes
    key_pem: bytes


def generate_self_signed(
    hostnames: Sequence[str] = DEFAULT_HOSTNAMES,
    *,
    common_name: str = "comfystream-byoc",
    valid_days: int = 365,
) -> SelfSignedCert:
    """Make an ECDSA P-256 certificate for ``hostnames`` (DNS names or IP addresses)."""
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=valid_days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return SelfSignedCert(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def server_ssl_context(
    cert: SelfSignedCert | None = None,
    *,
    cert_file: str | None = None,
    key_file: str | None = None,
) -> ssl.SSLContext:
    """Server context from PEM files, from ``cert``, or from a freshly generated certificate."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    if cert_file is not None:
        ctx.load_cert_chain(cert_file, key_file)
        return ctx
    cert = cert or generate_self_signed()
    # The ssl module only loads key material from files: write them privately, load, delete.
    with tempfile.TemporaryDirectory(prefix="tls-") as tmp:
        cert_path = os.path.join(tmp, "cert.pem")
        key_path = os.path.join(tmp, "key.pem")
        with open(cert_path, "wb") as f:
            f.write(cert.cert_pem)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(cert.key_pem)
        ctx.load_cert_chain(cert_path, key_path)
    return ctx


def client_ssl(verify: bool = True, *, ca_pem: bytes | None = None) -> ssl.SSLContext | bool:
    """The ``ssl=`` argument for aiohttp requests.

    ``verify=False`` turns certificate checks off (orchestrators with self-signed certificates);
    ``ca_pem`` trusts one extra certificate, e.g. a self-signed one we generated.
    """
    if not verify:
        return False
    if ca_pem is None:
        return True
    ctx = ssl.create_default_context(cadata=ca_pem.decode("ascii"))
    return ctx
