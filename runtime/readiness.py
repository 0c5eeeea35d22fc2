"""Readiness when the gRPC port speaks TLS: the launcher has no client certificate and need not
trust the server's CA, so it checks (a) grpc.health.v1 Check answers SERVING through Serve's
plaintext fallback proxy on loopback, and (b) the gRPC port completes a TLS handshake that
negotiates HTTP/2 (ALPN h2). Clients check the port itself over TLS."""

from __future__ import annotations

import socket
import ssl
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from heartrate_serve.settings import Settings


def probe_host(settings: Settings) -> str:
    """Where a local probe reaches the gRPC port: loopback for a wildcard or loopback bind."""
    host = settings.grpc_host.strip("[]")
    if host in ("0.0.0.0", "*", "", "localhost"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def tls_handshake_h2(host: str, port: int, timeout_s: float = 2.0) -> bool:
    """True when host:port completes a TLS handshake that selects ALPN h2 (the certificate is
    not verified: this checks the listener, not its identity)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    try:
        with (
            socket.create_connection((host, port), timeout=timeout_s) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            return tls.selected_alpn_protocol() == "h2"
    except (OSError, ssl.SSLError):
        return False


def health_serving(target: str, timeout_s: float = 2.0) -> bool:
    """True when grpc.health.v1 Check on a plaintext target answers SERVING."""
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            resp = stub.Check(health_pb2.HealthCheckRequest(), timeout=timeout_s)  # pyright: ignore[reportAttributeAccessIssue]
        except grpc.RpcError:
            return False
    return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)


def wait_until_serving_tls(settings: Settings, fallback_port: int, timeout_s: float) -> None:
    """Blocks until both checks of the module docstring pass; TimeoutError after timeout_s."""
    deadline = time.monotonic() + timeout_s
    host = probe_host(settings)
    while time.monotonic() < deadline:
        if health_serving(f"127.0.0.1:{fallback_port}") and tls_handshake_h2(
            host, settings.grpc_port
        ):
            return
        time.sleep(0.25)
    raise TimeoutError(
        f"service not SERVING over TLS on {host}:{settings.grpc_port} after {timeout_s:.0f} s"
    )
