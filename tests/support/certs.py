"""A throwaway PKI for TLS tests: a CA, a server certificate for localhost, a client certificate.

    pki = make_pki(tmp_path)
    grpc.ssl_server_credentials([(pki.server_key.read_bytes(), pki.server_cert.read_bytes())],
                                root_certificates=pki.ca.read_bytes(),       # mutual TLS
                                require_client_auth=True)
    heartrate --tls-ca {pki.ca} --tls-cert {pki.client_cert} --tls-key {pki.client_key} ...

The server certificate names DNS:localhost, IP:127.0.0.1 and IP:::1, so clients connect to any
of them without overriding the target name. Keys are ECDSA P-256 (fast to make), PEM, mode 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from heartrate_serve.runtime.dev_keys import write_private_key

SERVER_DNS_NAMES = ("localhost",)
SERVER_IPS = ("127.0.0.1", "::1")
CLIENT_NAME = "heartrate-client"
VALID_DAYS = 30


@dataclass(frozen=True)
class Pki:
    """PEM files of one test PKI (all in one folder)."""

    ca: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _builder(
    subject: str, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _leaf(
    subject: str,
    usage: x509.ObjectIdentifier,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    san: Sequence[x509.GeneralName] = (),
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A certificate signed by the CA for one purpose (server or client authentication)."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        _builder(subject, ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(san)), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def make_pki(
    folder: Path,
    *,
    dns_names: Sequence[str] = SERVER_DNS_NAMES,
    ips: Sequence[str] = SERVER_IPS,
    client_name: str = CLIENT_NAME,
    ca_name: str = "heartrate test CA",
) -> Pki:
    """A new CA in `folder` (created if missing) and a server and a client certificate it signed.

    Two calls with different folders give two unrelated CAs (for "wrong CA" tests)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        _builder(ca_name, _name(ca_name), ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    san: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    san += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    server_cert, server_key = _leaf(
        dns_names[0] if dns_names else ips[0], ExtendedKeyUsageOID.SERVER_AUTH, ca_cert, ca_key, san
    )
    client_cert, client_key = _leaf(client_name, ExtendedKeyUsageOID.CLIENT_AUTH, ca_cert, ca_key)
    pki = Pki(
        ca=folder / "ca.pem",
        ca_key=folder / "ca-key.pem",
        server_cert=folder / "server.pem",
        server_key=folder / "server-key.pem",
        client_cert=folder / "client.pem",
        client_key=folder / "client-key.pem",
    )
    _write_cert(pki.ca, ca_cert)
    write_private_key(pki.ca_key, ca_key)
    _write_cert(pki.server_cert, server_cert)
    write_private_key(pki.server_key, server_key)
    _write_cert(pki.client_cert, client_cert)
    write_private_key(pki.client_key, client_key)
    return pki
