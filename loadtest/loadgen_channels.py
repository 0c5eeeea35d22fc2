"""How the load generator connects: channel options, how many channels (HTTP/2 connections) a
scenario spreads over, the per-call timeout, and Security (TLS and a bearer token, or plaintext).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import grpc

STREAMS_PER_CHANNEL = 100
RPC_TIMEOUT_S = 30.0
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Distinct channels get distinct TCP connections (no subchannel sharing).
    ("grpc.use_local_subchannel_pool", 1),
]


def channels_for(concurrency: int, per_channel: int = STREAMS_PER_CHANNEL) -> int:
    """How many channels (HTTP/2 connections) to spread `concurrency` calls or streams over."""
    return max(1, math.ceil(concurrency / per_channel))


@dataclass(frozen=True)
class Security:
    """How the generator's channels connect: TLS trusting `tls_ca` (PEM bytes), and a bearer
    token sent with every call. Empty: plaintext, no token."""

    tls_ca: bytes | None = None
    token: str | None = None

    def channel(self, target: str) -> grpc.aio.Channel:
        """A new channel to target (its own TCP connection)."""
        if self.tls_ca is None:
            if self.token:
                raise ValueError("a token needs TLS (--tls-ca)")
            return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        creds = grpc.ssl_channel_credentials(root_certificates=self.tls_ca)
        if self.token:
            creds = grpc.composite_channel_credentials(
                creds, grpc.access_token_call_credentials(self.token)
            )
        return grpc.aio.secure_channel(target, creds, options=CHANNEL_OPTIONS)
