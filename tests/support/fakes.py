"""Stand-ins for Ray Serve objects, to run deployment classes in-process without Ray: a handle
whose `.method.remote(...)` calls a real object, and the gRPC context the ingress writes to."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import grpc


class _Call:
    """What `handle.method.remote(...)` returns: awaitable, like a DeploymentResponse."""

    def __init__(self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._fn, self._args, self._kwargs = fn, args, kwargs

    def __await__(self) -> Any:
        async def run() -> Any:
            await asyncio.sleep(0)
            result = self._fn(*self._args, **self._kwargs)
            return await result if inspect.isawaitable(result) else result

        return run().__await__()


class _Method:
    def __init__(self, fn: Any) -> None:
        self._fn = fn

    def remote(self, *args: Any, **kwargs: Any) -> _Call:
        return _Call(self._fn, args, kwargs)


class FakeHandle:
    """A DeploymentHandle stand-in that calls a real deployment object in this process."""

    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> _Method:
        return _Method(getattr(self._target, name))

    def options(self, **_options: Any) -> FakeHandle:
        """Handle options (e.g. _by_reference) change nothing in-process."""
        return self


class FakeContext:
    """The parts of RayServegRPCContext the ingress uses."""

    def __init__(self, metadata: list[tuple[str, str]] | None = None) -> None:
        self.code: grpc.StatusCode | None = None
        self.details = ""
        self.metadata = metadata or []
        self.trailing: list[tuple[str, Any]] = []

    def invocation_metadata(self) -> list[tuple[str, str]]:
        return self.metadata

    def trailing_metadata(self) -> list[tuple[str, Any]]:
        return self.trailing

    def set_trailing_metadata(self, trailing: list[tuple[str, Any]]) -> None:
        self.trailing = trailing

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details
