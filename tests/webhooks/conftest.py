"""Real local receivers for the webhook transport: plain HTTP, and TLS with a test CA."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pytest_httpserver import HTTPServer

from service.webhooks.addresses import CheckedTarget, IPAddress

LOCALHOST = IPv4Address("127.0.0.1")
TLS_HOSTNAME = "webhook.test"
# The server names clients asked the TLS receiver for, in order (cleared for each test).
SNI_SEEN: list[str | None] = []


def make_target(
    server: HTTPServer,
    *,
    hostname: str = "127.0.0.1",
    path: str = "/hook",
    addresses: tuple[IPAddress, ...] = (LOCALHOST,),
) -> CheckedTarget:
    """Return a target as check_url would, aimed at ``server`` whatever ``hostname`` says."""
    scheme = "https" if server.ssl_context is not None else "http"
    return CheckedTarget(scheme, hostname, server.port, path, addresses)


@pytest.fixture(scope="session")
def _plain_server() -> Iterator[HTTPServer]:
    # Threaded, so a receiver left sleeping by the timeout test holds up no later test.
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.clear()
    server.stop()


@pytest.fixture
def receiver(_plain_server: HTTPServer) -> HTTPServer:
    """Return a plain HTTP receiver on 127.0.0.1 with no expectations and an empty log."""
    _plain_server.clear()
    return _plain_server


@dataclass(frozen=True)
class CertificateAuthority:
    """A throwaway CA and the PEM bundle that trusts it."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    bundle: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@pytest.fixture(scope="session")
def certificate_authority(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("alertshare test CA"))
        .issuer_name(_name("alertshare test CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    bundle = tmp_path_factory.mktemp("tls") / "ca.pem"
    bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return CertificateAuthority(key, cert, bundle)


def _server_context(ca: CertificateAuthority, hostname: str, directory: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hostname))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    cert_file, key_file = directory / "server.pem", directory / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    context.sni_callback = lambda _socket, name, _context: SNI_SEEN.append(name)
    return context


@pytest.fixture(scope="session")
def _tls_server(
    certificate_authority: CertificateAuthority, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HTTPServer]:
    context = _server_context(
        certificate_authority, TLS_HOSTNAME, tmp_path_factory.mktemp("server")
    )
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=context, threaded=True)
    server.start()
    yield server
    server.clear()
    server.stop()


@pytest.fixture
def tls_receiver(_tls_server: HTTPServer) -> HTTPServer:
    """Return an HTTPS receiver on 127.0.0.1 whose certificate names ``webhook.test`` only."""
    _tls_server.clear()
    SNI_SEEN.clear()
    return _tls_server
