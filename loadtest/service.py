"""Starting the real service exactly as `make run` does (the launcher as a subprocess), and
measuring its process tree (RSS, CPU seconds) with psutil.

ServiceProcess is the one way the service is started from Python: by the benchmark, by
`make loadtest` and (through tests/support/service.py) by the end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from heartrate_serve.runtime.ray_runtime import free_port

SERVING_MARK = "SERVING on"
STOP_TIMEOUT_S = 90.0
LOG_TAIL_CHARS = 4000
# The launcher's SERVING line names the instance folder: "status: .../heartrate-status <dir>; ".
_INSTANCE_DIR = re.compile(r"heartrate-status (\S+);")


class ServiceProcess:
    """`python -m heartrate_serve.runtime.launcher`, data and logs in `workdir`.

    The gRPC port is `grpc_port` when given (e.g. to restart on the same port), else a free one;
    the metrics port is always a free one. `env` is added to (and overrides) the environment; the
    launcher starts its embedded Redis unless `env` has a REDIS_URL. With new_session=True the
    launcher gets its own session, so a terminal's Ctrl-C reaches only the caller (which stops
    it), and a launcher that does not stop in time is killed with its whole process group.

    Its output is copied to `workdir/launcher.log` (and to stdout when echo=True)."""

    def __init__(
        self,
        workdir: Path,
        *,
        echo: bool = False,
        env: dict[str, str] | None = None,
        grpc_port: int | None = None,
        new_session: bool = False,
    ):
        self.workdir = Path(workdir)
        self.grpc_port = free_port() if grpc_port is None else grpc_port
        self.metrics_port = free_port()
        while self.metrics_port == self.grpc_port:
            self.metrics_port = free_port()
        # The dashboard's port: free too (not 8000), unless env names one.
        self.http_port = int((env or {}).get("HTTP_PORT") or 0) or free_port()
        while self.http_port in (self.grpc_port, self.metrics_port):
            self.http_port = free_port()
        self._echo = echo
        self._extra_env = env or {}
        self._new_session = new_session
        self.process: subprocess.Popen[str] | None = None
        self.serving = threading.Event()
        self.start_to_serving_s: float | None = None
        self.instance_dir: Path | None = None  # from the SERVING line
        self.stop_took_s: float | None = None  # signal to exit, when stop() sent one
        self.killed = False  # stop() had to SIGKILL: the launcher did not stop in time
        self.lines: list[str] = []
        self._started_at = 0.0

    @property
    def target(self) -> str:
        """host:port of the gRPC endpoint."""
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def address(self) -> str:
        """host:port of the gRPC endpoint (the same as target)."""
        return self.target

    @property
    def log_path(self) -> Path:
        """The file the launcher's output is copied to."""
        return self.workdir / "launcher.log"

    def log_tail(self, n_chars: int = LOG_TAIL_CHARS) -> str:
        """The last n_chars of the launcher's output so far, for error messages."""
        return "".join(list(self.lines))[-n_chars:]

    def start(self) -> None:
        """Starts the launcher (returns at once; see wait_serving)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "GRPC_PORT": str(self.grpc_port),
            "METRICS_PORT": str(self.metrics_port),
            "HTTP_PORT": str(self.http_port),
            "DATA_DIR": str(self.workdir / "data"),
            "LOG_DIR": str(self.workdir / "log"),
            "PYTHONUNBUFFERED": "1",
            **self._extra_env,
        }
        if "REDIS_URL" not in self._extra_env:  # as `make run`: the launcher's embedded Redis
            env.pop("REDIS_URL", None)
        self._started_at = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "heartrate_serve.runtime.launcher"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=self._new_session,
        )
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        with open(self.log_path, "a") as log:
            for line in self.process.stdout:
                self.lines.append(line)
                log.write(line)
                log.flush()
                if self._echo:
                    sys.stdout.write(f"[service] {line}")
                    sys.stdout.flush()
                if SERVING_MARK in line and not self.serving.is_set():
                    self.start_to_serving_s = time.monotonic() - self._started_at
                    found = _INSTANCE_DIR.search(line)
                    self.instance_dir = Path(found.group(1)) if found else None
                    self.serving.set()

    def wait_serving(self, timeout_s: float = 120.0) -> float:
        """Blocks until the launcher printed SERVING; returns seconds since start(). Raises
        RuntimeError when the launcher exits first, TimeoutError after timeout_s; both with
        the end of its output."""
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while not self.serving.wait(0.2):
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the launcher exited with {self.process.returncode} before SERVING:\n"
                    + self.log_tail()
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"no SERVING after {timeout_s:.0f} s:\n" + self.log_tail())
        assert self.start_to_serving_s is not None
        return self.start_to_serving_s

    def stop(self, sig: int = signal.SIGTERM, *, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """Sends `sig` (SIGTERM or SIGINT: the launcher stops Serve, Ray and Redis), waits for
        the launcher to exit and returns its exit code (None when never started). After
        timeout_s it is killed (self.killed). The time from signal to exit is in stop_took_s;
        a launcher that already exited is not signalled again."""
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            started = time.monotonic()
            proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.killed = True
                if self._new_session:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                else:
                    proc.kill()
                proc.wait()
            self.stop_took_s = time.monotonic() - started
        return proc.returncode


@dataclass(frozen=True)
class TreeSample:
    """One look at a process tree: per-pid CPU seconds, and summed memory."""

    cpu_s: dict[int, float]
    rss_bytes: int
    pss_bytes: int
    processes: int


def tree(root_pids: list[int]) -> list[psutil.Process]:
    """The given processes and all their descendants (those still alive)."""
    seen: dict[int, psutil.Process] = {}
    for pid in root_pids:
        try:
            root = psutil.Process(pid)
            for p in [root, *root.children(recursive=True)]:
                seen.setdefault(p.pid, p)
        except psutil.NoSuchProcess:
            continue
    return list(seen.values())


def sample_tree(root_pids: list[int], *, pss: bool = False) -> TreeSample:
    """CPU seconds per pid and the summed RSS (and PSS when asked: slower) of the trees."""
    cpu: dict[int, float] = {}
    rss = pss_total = 0
    procs = tree(root_pids)
    for p in procs:
        try:
            with p.oneshot():
                t = p.cpu_times()
                cpu[p.pid] = t.user + t.system
                if pss:
                    info = p.memory_full_info()
                    rss += info.rss
                    pss_total += info.pss
                else:
                    rss += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return TreeSample(cpu, rss, pss_total, len(procs))


def cpu_used(before: TreeSample, after: TreeSample) -> float:
    """CPU seconds the tree used between two samples (new processes count from zero)."""
    return sum(t - before.cpu_s.get(pid, 0.0) for pid, t in after.cpu_s.items())


@contextlib.contextmanager
def own_service(prefix: str, timeout_s: float = 180.0) -> Iterator[ServiceProcess]:
    """A service of its own, started as `make run` does in a temporary folder, once SERVING
    (announced on stdout); stopped on the way out. For the command-line load tools."""
    with tempfile.TemporaryDirectory(prefix=prefix) as work:
        svc = ServiceProcess(Path(work), new_session=True)
        svc.start()
        try:
            svc.wait_serving(timeout_s)
            print(f"service SERVING after {svc.start_to_serving_s:.1f} s", flush=True)
            yield svc
        finally:
            svc.stop()
