"""Exit codes of the `heartrate` client, and how a failed RPC is reported.

Exit codes: 0 success, 1 bad input (file, settings, no readings, TLS files, signing key), 2 a gRPC
error (and argparse usage errors), 3 the service cannot be reached (TLS handshake failures
included), 4 `health` answered but the service is not SERVING, 130 interrupted.
"""

from __future__ import annotations

import grpc

EXIT_OK = 0
EXIT_INPUT = 1
EXIT_RPC = 2
EXIT_UNREACHABLE = 3
EXIT_NOT_SERVING = 4
EXIT_INTERRUPTED = 130

UNREACHABLE_MARKERS = (
    "failed to connect",
    "connection refused",
    "dns resolution failed",
    "errors resolving",
    "domain name not found",
    "name or service not known",
    "no route to host",
    "network is unreachable",
)
# The TLS handshake failed on our side (untrusted or mismatched server certificate, TLS to a
# plaintext port): the client's TLS options do not fit the server.
TLS_MARKERS = ("tls handshake", "ssl_error", "certificate_verify", "hostname verification")
# The server dropped the connection before any answer: typically a TLS port reached in plaintext,
# or a mutual-TLS port reached without an acceptable client certificate.
CLOSED_MARKERS = ("socket closed", "connection reset")
UNAUTHENTICATED_HINT = (
    "give a token with --token or HEARTRATE_TOKEN (`heartrate token issue` signs a development one)"
)


def rpc_error_report(
    code_name: str, details: str, address: str, *, token_given: bool = True
) -> tuple[int, str]:
    """(exit code, stderr message) for a failed RPC; an unreachable server gets exit 3, with what
    went wrong when it was TLS; UNAUTHENTICATED without a token says how to give one."""
    lowered = details.lower()
    if code_name == "UNAVAILABLE":
        reason = details.rpartition("last error: ")[2] or details
        if any(m in lowered for m in TLS_MARKERS):
            return EXIT_UNREACHABLE, (
                f"error: TLS with {address} failed: {reason} "
                "(check --tls-ca, --tls-server-name; no TLS on that port?)"
            )
        if "failed to connect" in lowered and any(m in lowered for m in CLOSED_MARKERS):
            return EXIT_UNREACHABLE, (
                f"error: {address} closed the connection: {reason} (a TLS port? try --tls or "
                "--tls-ca FILE; mutual TLS? --tls-cert and --tls-key)"
            )
        if any(m in lowered for m in UNREACHABLE_MARKERS):
            return EXIT_UNREACHABLE, f"error: cannot reach {address} (is the service running?)"
    message = f"error: {code_name}: {details}"
    if code_name == "UNAUTHENTICATED" and not token_given:
        message += f" ({UNAUTHENTICATED_HINT})"
    return EXIT_RPC, message


def describe_rpc_error(exc: grpc.RpcError) -> tuple[str, str]:
    """(status code name, details) of an RpcError raised by a sync or aio call."""
    code = exc.code() if callable(getattr(exc, "code", None)) else None
    details = exc.details() if callable(getattr(exc, "details", None)) else None
    return (code.name if code is not None else "UNKNOWN"), str(details or exc)
