"""Structured logs: JSON lines with Serve's request id, and LOG_DIR/server.log for WARNING+.

Replicas: the `heartrate_serve.*` loggers hand every record to Serve's `ray.serve` logger (its
per-replica JSON file in the Ray session's logs/serve/, which adds request_id, application,
deployment and replica), and append WARNING and above to LOG_DIR/server.log.
Launcher and driver: JSON lines on stderr, and WARNING and above to LOG_DIR/server.log.

server.log has several writers at once (every replica, the driver, the launcher), so no writer
rotates it: writers append through WatchedFileHandler, which reopens the path once it was
renamed, and only the launcher runs a ServerLogRotator, a thread that renames server.log ->
server.log.1 -> ... when it is too big or its first line is a week old. Nobody truncates or
deletes a file that another process still writes; a record written during a rename lands in
server.log.1. Lines are appended with O_APPEND: short lines of concurrent writers do not mix.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from heartrate_serve.settings import Settings

LOGGER = "heartrate_serve"
SERVER_LOG = "server.log"
WEEK_S = 7 * 86_400.0
CHECK_S = 5.0  # how often the rotator looks at server.log
_STD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}


class RequestContext(logging.Filter):
    """Adds request_id, application, deployment and replica when logged inside a replica."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Never drops a record; only annotates it (no-op outside Ray Serve)."""
        serve_ctx = sys.modules.get("ray.serve.context")  # never imports Ray itself
        if serve_ctx is None:
            return True
        try:
            request = serve_ctx._get_serve_request_context()
            replica = serve_ctx._get_internal_replica_context()
        except Exception:  # context API of another Ray version: log without it
            return True
        if request.request_id:
            record.request_id = request.request_id
        if replica is not None:
            record.application = replica.app_name
            record.deployment = replica.deployment
            record.replica = replica.replica_tag
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, pid, component, extras, exc."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self._component = component

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON (non-JSON extras as their str())."""
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        out: dict[str, object] = {
            "ts": ts,
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
            "component": self._component,
        }
        for key, value in vars(record).items():
            if key not in _STD_ATTRS and not key.startswith("_") and key not in out:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class _ToServeLogger(logging.Handler):
    """Hands records to Serve's replica logger (JSON file with the request context)."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger("ray.serve").handle(record)


def server_log_handler(log_dir: Path, component: str) -> logging.Handler:
    """WARNING+ appended to log_dir/server.log as JSON; reopens the file after a rotation."""
    log_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.WatchedFileHandler(log_dir / SERVER_LOG, encoding="utf-8")
    handler.setLevel(logging.WARNING)
    handler.setFormatter(JsonFormatter(component))
    handler.addFilter(RequestContext())
    return handler


def _reset(logger: logging.Logger, level: str) -> logging.Logger:
    for old in list(logger.handlers):
        logger.removeHandler(old)
        old.close()
    logger.setLevel(level)
    return logger


def configure_replica_logging(settings: Settings) -> None:
    """In a replica: heartrate_serve.* through Serve's logger, WARNING+ to server.log."""
    logger = _reset(logging.getLogger(LOGGER), settings.log_level)
    logger.propagate = False  # not also to the worker's stderr
    logger.addHandler(server_log_handler(settings.log_dir, "replica"))
    logger.addHandler(_ToServeLogger())


def configure_process_logging(settings: Settings, component: str) -> None:
    """In the launcher or the driver: JSON lines on stderr, WARNING+ to server.log."""
    root = _reset(logging.getLogger(), settings.log_level)
    stderr = logging.StreamHandler()
    stderr.setFormatter(JsonFormatter(component))
    root.addHandler(stderr)
    root.addHandler(server_log_handler(settings.log_dir, component))


class ServerLogRotator:
    """Rotates server.log by size and age from one process (the launcher), by renaming only."""

    def __init__(
        self,
        path: Path,
        max_bytes: int,
        backups: int,
        max_age_s: float = WEEK_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.max_age_s = max_age_s
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerLogRotator:
        """A rotator of LOG_DIR/server.log with LOG_MAX_BYTES and LOG_BACKUPS, weekly."""
        path = settings.log_dir / SERVER_LOG
        return cls(path, settings.log_max_bytes, settings.log_backups)

    def due(self) -> bool:
        """True when server.log has reached max_bytes or its first line is max_age_s old."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return False
        if st.st_size == 0:
            return False
        if st.st_size >= self.max_bytes:
            return True
        return self._clock() - self._started(st.st_mtime) >= self.max_age_s

    def _started(self, fallback: float) -> float:
        """The time of server.log's first record (its mtime when that line is unreadable)."""
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                first = f.readline(65_536)
            return datetime.fromisoformat(json.loads(first)["ts"]).timestamp()
        except (OSError, ValueError, KeyError, TypeError):
            return fallback

    def rotate(self) -> None:
        """server.log -> .1 -> .2 ... -> .<backups> (the oldest is dropped); writers reopen."""
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
            return
        for i in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))

    def rotate_if_due(self) -> bool:
        """Rotates when due; True when it did."""
        if not self.due():
            return False
        self.rotate()
        return True

    def __enter__(self) -> ServerLogRotator:
        self._thread = threading.Thread(target=self._run, name="log-rotator", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            try:
                self.rotate_if_due()
            except OSError as error:  # a full or read-only disk must not stop the service
                logging.getLogger(f"{LOGGER}.logs").warning("server.log rotation: %s", error)
            if self._stop.wait(CHECK_S):
                return
