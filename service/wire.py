"""Request bytes that are not a message: answered INVALID_ARGUMENT (a per-reading error inside a
stream) by the service core, instead of the UNKNOWN that gRPC gives when a deserializer raises.

The gRPC registration (deployments/grpc_services.py, and the plain baseline) deserializes
requests with `lenient(MessageClass)`: bytes that do not parse, or more than MAX_MESSAGE_BYTES,
become an `Undecodable` that reaches the service core like a request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from google.protobuf.message import DecodeError, Message

from heartrate_serve.core.errors import InvalidRequest

# The largest request accepted, bytes. The largest valid requests are zone requests over sent
# readings (~8 B per columnar reading: 1 M readings ~8 MB) and a 100 000-reading batch
# (~1.3 MB). Larger messages answer INVALID_ARGUMENT; gRPC itself refuses any message over
# GRPC_HARD_MAX_BYTES (RESOURCE_EXHAUSTED) before it is read into memory.
MAX_MESSAGE_BYTES = 32 * 1024 * 1024
GRPC_HARD_MAX_BYTES = 64 * 1024 * 1024
M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class Undecodable:
    """A request message that could not be read: its type name and why."""

    message: str
    reason: str

    def error(self) -> InvalidRequest:
        """The INVALID_ARGUMENT answer, naming the message (there is no field to name)."""
        return InvalidRequest(self.message, f"{self.message}: {self.reason}")


def lenient(cls: type[M]) -> Callable[[bytes], M | Undecodable]:
    """A request deserializer for cls that returns Undecodable instead of raising."""
    name = cls.DESCRIPTOR.name

    def parse(data: bytes) -> M | Undecodable:
        if len(data) > MAX_MESSAGE_BYTES:
            return Undecodable(
                name, f"message of {len(data)} bytes is over the {MAX_MESSAGE_BYTES}-byte limit"
            )
        try:
            return cls.FromString(data)
        except (DecodeError, RecursionError, ValueError) as error:
            return Undecodable(name, f"not a valid {name} message ({_short(error)})")

    return parse


def decoded(request: Any) -> Any:
    """The request, or InvalidRequest when it is an Undecodable."""
    if isinstance(request, Undecodable):
        raise request.error()
    return request


def _short(error: BaseException) -> str:
    return (str(error) or type(error).__name__)[:120]
