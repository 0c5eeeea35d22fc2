"""A Ray worker_process_setup_hook that keeps Serve's own gRPC servers on loopback.

Serve binds the Python gRPC proxy and the direct-ingress replica servers to "[::]:port", with no
option to choose the host; for a local run every listener we start stays on 127.0.0.1.
"""

from __future__ import annotations

from typing import Any


def setup() -> None:
    """Rewrites Serve's "[::]:port" gRPC binds to "127.0.0.1:port" in this worker."""
    from ray.serve._private import default_impl

    original = default_impl.add_grpc_address

    def add_grpc_address(server: Any, address: str) -> Any:
        if address.startswith("[::]:"):
            address = "127.0.0.1:" + address[len("[::]:") :]
        return original(server, address)

    default_impl.add_grpc_address = add_grpc_address  # type: ignore[assignment]
