"""Exit codes and errors of the `heartrate` client, and how a failed RPC is reported.

Exit codes: 0 success, 1 bad input (file, settings, no readings), 2 a gRPC error (and argparse
usage errors), 3 the service cannot be reached, 130 interrupted.
"""

from __future__ import annotations

import grpc

EXIT_OK = 0
EXIT_INPUT = 1
EXIT_RPC = 2
EXIT_UNREACHABLE = 3
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


class InputError(Exception):
    """Input the client cannot use (unreadable file, no readings, bad settings)."""


def rpc_error_report(code_name: str, details: str, address: str) -> tuple[int, str]:
    """(exit code, stderr message) for a failed RPC; an unreachable server gets exit 3."""
    lowered = details.lower()
    if code_name == "UNAVAILABLE" and any(m in lowered for m in UNREACHABLE_MARKERS):
        return EXIT_UNREACHABLE, f"error: cannot reach {address} (is the service running?)"
    return EXIT_RPC, f"error: {code_name}: {details}"


def describe_rpc_error(exc: grpc.RpcError) -> tuple[str, str]:
    """(status code name, details) of an RpcError raised by a sync or aio call."""
    code = exc.code() if callable(getattr(exc, "code", None)) else None
    details = exc.details() if callable(getattr(exc, "details", None)) else None
    return (code.name if code is not None else "UNKNOWN"), str(details or exc)
