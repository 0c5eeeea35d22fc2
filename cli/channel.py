"""The `heartrate` client's connection: plaintext or TLS channel, the bearer token on every call.

TLS is on when any of --tls, --tls-ca, --tls-cert/--tls-key or --tls-server-name is given:
--tls-ca FILE trusts that PEM CA bundle instead of the system roots, --tls-cert/--tls-key present
a client certificate (mutual TLS), --tls-server-name checks the server certificate against that
name instead of the address's host (grpc.ssl_target_name_override).

The token (--token or HEARTRATE_TOKEN) goes out as `authorization: Bearer <token>` metadata on
every call, streams and health checks included. It is never printed: error messages that could
hold it go through `redact`.
"""

from __future__ import annotations

import argparse
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from heartrate_serve.core.errors import InputError
from heartrate_serve.settings import is_loopback

Metadata = tuple[tuple[str, str], ...]
REDACTED = "<token>"


@dataclass(frozen=True)
class TlsOptions:
    """The TLS options of one command line (see the module docstring)."""

    enabled: bool = False
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    server_name: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TlsOptions:
        """The options given on the command line (absent attributes: not given)."""
        ca, cert, key = (getattr(args, n, None) for n in ("tls_ca", "tls_cert", "tls_key"))
        server_name = getattr(args, "tls_server_name", None)
        enabled = bool(getattr(args, "tls", False) or ca or cert or key or server_name)
        return cls(enabled, ca, cert, key, server_name)


def _read_pem(path: Path, option: str, marker: str) -> bytes:
    """A PEM file's bytes; InputError naming the option when unreadable or not PEM of that kind."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {option} {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data or marker.encode() not in data:
        raise InputError(f"{option} {path}: not a PEM file with a {marker}")
    return data


def channel_credentials(tls: TlsOptions) -> grpc.ChannelCredentials | None:
    """TLS credentials for the options; None for a plaintext channel."""
    if not tls.enabled:
        return None
    if (tls.cert is None) != (tls.key is None):
        raise InputError("--tls-cert and --tls-key: give both or neither")
    roots = _read_pem(tls.ca, "--tls-ca", "CERTIFICATE") if tls.ca else None
    chain = _read_pem(tls.cert, "--tls-cert", "CERTIFICATE") if tls.cert else None
    key = _read_pem(tls.key, "--tls-key", "PRIVATE KEY") if tls.key else None
    return grpc.ssl_channel_credentials(
        root_certificates=roots, private_key=key, certificate_chain=chain
    )


def channel_options(tls: TlsOptions) -> list[tuple[str, Any]]:
    """Channel arguments: the TLS target name override when --tls-server-name is given."""
    if tls.enabled and tls.server_name:
        return [("grpc.ssl_target_name_override", tls.server_name)]
    return []


def open_channel(args: argparse.Namespace) -> grpc.Channel:
    """A blocking channel to args.address, TLS or plaintext as the options say."""
    tls = TlsOptions.from_args(args)
    creds, options = channel_credentials(tls), channel_options(tls)
    if creds is None:
        return grpc.insecure_channel(args.address, options=options)
    return grpc.secure_channel(args.address, creds, options=options)


def open_aio_channel(args: argparse.Namespace) -> grpc.aio.Channel:
    """An asyncio channel to args.address, TLS or plaintext as the options say."""
    tls = TlsOptions.from_args(args)
    creds, options = channel_credentials(tls), channel_options(tls)
    if creds is None:
        return grpc.aio.insecure_channel(args.address, options=options)
    return grpc.aio.secure_channel(args.address, creds, options=options)


def clean_token(token: str | None) -> str | None:
    """The token without surrounding blanks or a 'Bearer ' prefix; None when empty.

    InputError (never quoting the token) when it holds characters a header value cannot."""
    if token is None:
        return None
    token = token.strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    if not token:
        return None
    if not all(33 <= ord(c) <= 126 for c in token):
        raise InputError(
            "the token (--token / HEARTRATE_TOKEN) holds spaces or characters outside "
            "printable ASCII; it is not a JWT"
        )
    return token


def auth_metadata(token: str | None) -> Metadata:
    """The call metadata carrying the token; empty without one."""
    return (("authorization", f"Bearer {token}"),) if token else ()


class MetadataStub:
    """A stub whose every call also sends `metadata` (sync and asyncio stubs alike)."""

    def __init__(self, stub: Any, metadata: Metadata) -> None:
        self._stub = stub
        self._metadata = metadata

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._stub, name)
        return functools.partial(method, metadata=self._metadata) if callable(method) else method


def with_token(stub: Any, token: str | None) -> Any:
    """The stub itself without a token, else one that sends it on every call."""
    return MetadataStub(stub, auth_metadata(token)) if token else stub


def address_host(address: str) -> str | None:
    """The host of 'host:port' / '[v6]:port'; None for target URIs (dns:///..., unix:...)."""
    if "/" in address or address.startswith(("unix:", "dns:", "ipv4:", "ipv6:")):
        return None
    if address.startswith("["):
        return address[1 : address.find("]")] if "]" in address else None
    host, _, _ = address.rpartition(":")
    return host or address


def plaintext_token_warning(args: argparse.Namespace) -> str | None:
    """A warning when the token would cross the network unencrypted, else None.

    Loopback addresses are fine (`make run` serves plaintext on 127.0.0.1)."""
    if not getattr(args, "token", None) or TlsOptions.from_args(args).enabled:
        return None
    host = address_host(args.address)
    if host is not None and is_loopback(host):
        return None
    return (
        f"warning: sending the token to {args.address} without TLS; "
        "use --tls or --tls-ca FILE if the service speaks TLS"
    )


def redact(message: str, token: str | None) -> str:
    """The message with every occurrence of the token replaced."""
    return message.replace(token, REDACTED) if token else message
