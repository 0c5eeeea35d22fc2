"""What the load generator measures: the Recorder of operations finishing inside the measured
window, the clocks (wall milliseconds, the process's CPU seconds) and the text of a failed call
or stream.
"""

from __future__ import annotations

import asyncio
import resource
import time
from dataclasses import dataclass, field

import grpc


def now_ms() -> int:
    """The wall clock in Unix milliseconds."""
    return time.time_ns() // 1_000_000


def cpu_s() -> float:
    """CPU seconds (user + system) this process has used."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@dataclass
class Recorder:
    """Latencies and units of operations finishing inside [window_start, window_end]."""

    window_start: float
    window_end: float
    latencies_ms: list[float] = field(default_factory=list)
    units: int = 0
    ops: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)

    def ok(self, start: float, end: float, units: int = 1) -> None:
        """Records a successful operation that ran from start to end (perf_counter seconds)."""
        if self.window_start <= end <= self.window_end:
            self.latencies_ms.append((end - start) * 1000)
            self.units += units
            self.ops += 1

    def error(self, what: object) -> None:
        """Counts a failed operation (keeps a few messages as samples)."""
        self.errors += 1
        if len(self.error_samples) < 5:
            at = time.perf_counter() - self.window_start
            self.error_samples.append(f"{str(what)[:300]} (at {at:+.1f} s from the window start)")


def rpc_error(error: grpc.aio.AioRpcError) -> str:
    """A failed call as "<status code>: <details>"."""
    return f"{error.code().name}: {error.details()}"


async def stream_error(call: grpc.aio.StreamStreamCall, error: Exception) -> str:
    """What ended a stream: its status when it has one (a write after the end raises
    InvalidStateError, not the status)."""
    if isinstance(error, grpc.aio.AioRpcError):
        return rpc_error(error)
    try:
        code = await asyncio.wait_for(call.code(), 5)
        return f"{code.name}: {await call.details()}"
    except Exception:  # noqa: BLE001 - best effort: report the original error
        return repr(error)
