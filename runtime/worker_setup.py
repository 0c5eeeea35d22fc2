"""A Ray worker_process_setup_hook for the processes of a local run (`make run`).

- Loopback: Serve binds the Python gRPC proxy and the direct-ingress replica servers to
  "[::]:port", with no option to choose the host; every listener we start stays on 127.0.0.1.
- Connection bursts: gRPC servers cancel calls that wait unrequested beyond a soft limit of 1 000
  pending calls. 2 000 devices opening their streams within a second hit it (CANCELLED seen in the
  benchmark), so Serve's gRPC servers get room for a burst of 20 000.
"""

from __future__ import annotations

from typing import Any

GRPC_SERVER_BURST_OPTIONS = [
    ("grpc.server.max_pending_requests", 20_000),
    ("grpc.server.max_pending_requests_hard_limit", 40_000),
]


def _loopback() -> None:
    from ray.serve._private import default_impl

    original = default_impl.add_grpc_address

    def add_grpc_address(server: Any, address: str) -> Any:
        if address.startswith("[::]:"):
            address = "127.0.0.1:" + address[len("[::]:") :]
        return original(server, address)

    default_impl.add_grpc_address = add_grpc_address  # type: ignore[assignment]


def _grpc_server_limits() -> None:
    from ray.serve._private import constants

    # The list object Serve passes to every gRPCGenericServer it creates: extended in place.
    constants.DEFAULT_GRPC_SERVER_OPTIONS.extend(GRPC_SERVER_BURST_OPTIONS)


def _gc_thresholds() -> None:
    import gc

    # Thousands of open streams keep many live objects; the default threshold (700) runs the
    # cyclic collector often, and its pauses showed up as tail latency of stream acks.
    gc.set_threshold(50_000, 20, 20)


def setup() -> None:
    """Runs in every Ray worker of the instance before any actor starts."""
    _loopback()
    _grpc_server_limits()
    _gc_thresholds()
