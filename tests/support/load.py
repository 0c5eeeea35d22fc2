"""Load and inspection helpers for the e2e tests that push the service hard: request builders for
large batches and columnar zone requests, a channel that allows large messages, the running
instance's folder, its replica processes, and a live view of its replica counts (ReplicaWatch).

Everything talks to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import psutil

from heartrate_serve.proto import heartrate_service_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]
MAX_MESSAGE_BYTES = 64 << 20
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]
APPLICATION = "heartrate"


def big_channel(address: str) -> grpc.aio.Channel:
    """A grpc.aio channel to address that sends and receives messages up to 64 MiB."""
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)


def new_user(prefix: str) -> str:
    """A fresh user id, so tests never see each other's data."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def now_ms() -> int:
    """The wall clock in Unix milliseconds."""
    return time.time_ns() // 1_000_000


def workout_bpm(n: int, seed: int = 0, low: int = 60, high: int = 140) -> np.ndarray:
    """n valid heart rates (low..high, inside the normal band by default) in a workout-like
    shape: a slow wave plus noise."""
    rng = np.random.default_rng(seed)
    wave = (np.sin(np.arange(n) / 600.0) + 1.0) / 2.0
    bpm = low + wave * (high - low) + rng.normal(0, 3, n)
    return np.clip(np.rint(bpm), low, high).astype(np.int32)


def timestamps_ms(n: int, end_ms: int, span_ms: int) -> np.ndarray:
    """n distinct, increasing millisecond timestamps spread over (end_ms - span_ms, end_ms]."""
    step = max(1, span_ms // n)
    return end_ms - (n - 1 - np.arange(n, dtype=np.int64)) * step


def batch_request(
    user_id: str, n: int, end_ms: int | None = None, span_ms: int = 3_000_000, seed: int = 0
) -> pb.HeartRateBatchRequest:
    """A columnar batch of n valid readings of one user, in the span_ms before end_ms (default:
    ending a second ago, so every timestamp is in the last hour)."""
    end = (now_ms() - 1_000) if end_ms is None else end_ms
    return pb.HeartRateBatchRequest(
        user_id=user_id,
        bpm=workout_bpm(n, seed).tolist(),
        timestamps_ms=timestamps_ms(n, end, span_ms).tolist(),
    )


def zone_request(
    n: int, seed: int = 0, age: int = 40, step_ms: int = 1_000
) -> pb.ExerciseZoneRequest:
    """A columnar zone request over n sent readings (bpm + timestamps_ms, step_ms apart)."""
    start = now_ms() - n * step_ms
    return pb.ExerciseZoneRequest(
        age=age,
        bpm=workout_bpm(n, seed, low=70, high=185).tolist(),
        timestamps_ms=(start + np.arange(n, dtype=np.int64) * step_ms).tolist(),
    )


def instance_dir(service: Any) -> Path:
    """The running instance's folder (Ray session, HAProxy state), from the fixture when it
    knows it, else from the launcher's SERVING line."""
    known = getattr(service, "instance_dir", None) or getattr(
        getattr(service, "launcher", None), "instance_dir", None
    )
    if known:
        return Path(known)
    found = re.search(r"heartrate-status (\S+);", service.log_path.read_text(errors="replace"))
    if not found:
        raise LookupError(f"no instance folder in the launcher's output:\n{service.log_tail()}")
    return Path(found.group(1))


def replica_processes(instance: Path, deployment: str) -> list[psutil.Process]:
    """The live worker processes of `deployment`'s replicas in this instance: process title
    `ray::ServeReplica:heartrate:<deployment>` (`.<method>` appended while it runs a call) and
    files open under the instance folder (its Ray session's logs)."""
    title = f"ServeReplica:{APPLICATION}:{deployment}"
    prefix = str(instance).rstrip("/") + "/"
    found = []
    for proc in psutil.process_iter():
        try:
            cmdline = " ".join(proc.cmdline())
            if not re.search(rf"{re.escape(title)}(?![A-Za-z0-9_])", cmdline):
                continue
            if any(f.path.startswith(prefix) for f in proc.open_files()):
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


# --- replica counts, read from outside through the instance's Ray GCS -----------------------------


@dataclass
class ReplicaWatch:
    """Replica counts per deployment over time, from `serve.status()` polled by a child process
    (tests/support/serve_watch.py) connected to the instance's Ray GCS once (as
    runtime/status.py connects; one connection for the whole watch instead of one per look)."""

    instance: Path
    interval_s: float = 1.0
    history: list[dict[str, Any]] = field(default_factory=list)
    _proc: asyncio.subprocess.Process | None = None
    _reader: asyncio.Task[None] | None = None
    _stderr: list[str] = field(default_factory=list)

    async def __aenter__(self) -> ReplicaWatch:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.support.serve_watch",
            str(self.instance),
            str(self.interval_s),
            cwd=str(ROOT),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read())
        try:
            await self.wait_for(lambda _: True, 60, "the first serve.status() of the watcher")
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            try:
                await asyncio.wait_for(self._proc.wait(), 15)
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        assert self._proc.stderr is not None
        err_task = asyncio.create_task(self._read_stderr(self._proc.stderr))
        try:
            async for line in self._proc.stdout:
                with contextlib.suppress(ValueError):
                    self.history.append(json.loads(line))
        finally:
            err_task.cancel()

    async def _read_stderr(self, stream: asyncio.StreamReader) -> None:
        async for line in stream:
            self._stderr = [*self._stderr[-20:], line.decode(errors="replace")]

    @property
    def latest(self) -> dict[str, Any]:
        """The newest sample: {"t": monotonic s, "deployments": {name: {state: n}}} (or "error")."""
        return self.history[-1] if self.history else {}

    def running(self, deployment: str, sample: dict[str, Any] | None = None) -> int:
        """RUNNING replicas of deployment in sample (default: the newest)."""
        sample = self.latest if sample is None else sample
        return int(sample.get("deployments", {}).get(deployment, {}).get("RUNNING", 0))

    def total(self, deployment: str, sample: dict[str, Any] | None = None) -> int:
        """Replicas of deployment in any state (starting, running, stopping) in sample."""
        sample = self.latest if sample is None else sample
        return int(sum(sample.get("deployments", {}).get(deployment, {}).values()))

    def since(self, t: float) -> list[dict[str, Any]]:
        """Samples taken at or after monotonic time t."""
        return [s for s in self.history if s.get("t", 0) >= t and "deployments" in s]

    def describe(self, last: int = 8) -> str:
        """The last samples, for failure messages."""
        rows = [
            f"  t={s.get('t', 0):.1f} {s.get('deployments') or s.get('error')}"
            for s in self.history[-last:]
        ]
        return "\n".join(rows + [f"  watcher stderr: {''.join(self._stderr[-5:])!r}"])

    async def wait_stable(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        hold_s: float,
        timeout_s: float,
        what: str,
    ) -> None:
        """Waits until predicate has held for every sample over the last hold_s seconds (a
        decision Serve may still take from earlier load has had time to show); AssertionError
        after timeout_s with the recent samples."""
        deadline = time.monotonic() + timeout_s
        held_since: float | None = None
        seen = len(self.history)
        while time.monotonic() < deadline:
            for sample in self.history[seen:]:
                if "deployments" not in sample:
                    continue
                if predicate(sample):
                    held_since = sample["t"] if held_since is None else held_since
                else:
                    held_since = None
            seen = len(self.history)
            if held_since is not None and self.latest.get("t", 0) - held_since >= hold_s:
                return
            if self._proc is not None and self._proc.returncode is not None:
                raise AssertionError(f"replica watcher exited:\n{self.describe()}")
            await asyncio.sleep(0.2)
        raise AssertionError(
            f"not within {timeout_s:.0f} s: {what} (held {hold_s:.0f} s)\n{self.describe()}"
        )

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float, what: str
    ) -> dict[str, Any]:
        """The first new sample (from now on) satisfying predicate; AssertionError after
        timeout_s with the recent samples."""
        deadline = time.monotonic() + timeout_s
        seen = len(self.history)
        while time.monotonic() < deadline:
            for sample in self.history[seen:]:
                if "deployments" in sample and predicate(sample):
                    return sample
            seen = len(self.history)
            if self._proc is not None and self._proc.returncode is not None:
                raise AssertionError(f"replica watcher exited:\n{self.describe()}")
            await asyncio.sleep(0.2)
        raise AssertionError(f"not within {timeout_s:.0f} s: {what}\n{self.describe()}")


# --- bounded load loops ---------------------------------------------------------------------------


@dataclass
class LoadStats:
    """What a load loop did: calls that succeeded, units (readings) in them, and failures."""

    ok: int = 0
    units: int = 0
    errors: list[str] = field(default_factory=list)


async def loop_until(
    stop: asyncio.Event,
    deadline: float,
    call: Callable[[int], Awaitable[int]],
    stats: LoadStats,
) -> None:
    """Calls call(i) for i = 0, 1, ... until stop is set or monotonic time passes deadline;
    call returns the units it did; RPC failures are recorded, not raised."""
    i = 0
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            units = await call(i)
            stats.units += units
            stats.ok += 1
        except grpc.aio.AioRpcError as error:
            stats.errors.append(f"{error.code().name}: {error.details()}")
        i += 1


def rpc_errors(results: Sequence[object]) -> list[str]:
    """The failures among asyncio.gather(..., return_exceptions=True) results, as text."""
    out = []
    for r in results:
        if isinstance(r, grpc.aio.AioRpcError):
            out.append(f"{r.code().name}: {r.details()}")
        elif isinstance(r, BaseException):
            out.append(f"{type(r).__name__}: {r}")
    return out
