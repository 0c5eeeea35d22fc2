"""JSON log lines, the request context, server.log's writers and its size/age rotation."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from heartrate_serve.runtime import logging_setup as ls
from heartrate_serve.settings import Settings


def _record(msg: str = "hello %s", *args: Any, level: int = logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord("heartrate_serve.test", level, __file__, 1, msg, args or ("x",), None)


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[logging.Logger]:
    """A logger appending to tmp_path/server.log through server_log_handler."""
    logger = logging.getLogger(f"heartrate_serve.test.{tmp_path.name}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = ls.server_log_handler(tmp_path, "test")
    logger.addHandler(handler)
    yield logger
    logger.removeHandler(handler)
    handler.close()


def lines(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a log file."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_json_line_has_fields_and_extras() -> None:
    """One JSON object: ts, level, logger, msg, pid, component, plus `extra` fields."""
    record = _record()
    record.sent = 3
    out = json.loads(ls.JsonFormatter("replica").format(record))
    assert out["msg"] == "hello x" and out["level"] == "WARNING" and out["sent"] == 3
    assert out["component"] == "replica" and out["logger"] == "heartrate_serve.test"
    assert datetime.fromisoformat(out["ts"]).tzinfo is not None


def test_json_line_carries_exception() -> None:
    """exc_info is rendered as a traceback string under "exc"."""
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "m", None, sys.exc_info())
    assert "ValueError: boom" in json.loads(ls.JsonFormatter("t").format(record))["exc"]


def test_request_context_outside_serve_adds_nothing() -> None:
    """Without Ray Serve loaded (or outside a request) no context fields are added."""
    record = _record()
    assert ls.RequestContext().filter(record)
    assert not hasattr(record, "request_id") and not hasattr(record, "replica")


def test_request_context_inside_a_replica(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside a replica the request id, application, deployment and replica are added."""
    request = SimpleNamespace(request_id="req-1")
    replica = SimpleNamespace(app_name="heartrate", deployment="Ingress", replica_tag="abc")
    fake = SimpleNamespace(
        _get_serve_request_context=lambda: request,
        _get_internal_replica_context=lambda: replica,
    )
    monkeypatch.setitem(sys.modules, "ray.serve.context", fake)
    out = json.loads(ls.JsonFormatter("replica").format(_filtered(_record())))
    assert (out["request_id"], out["deployment"], out["replica"]) == ("req-1", "Ingress", "abc")


def _filtered(record: logging.LogRecord) -> logging.LogRecord:
    ls.RequestContext().filter(record)
    return record


def test_server_log_takes_warning_and_above_only(writer: logging.Logger, tmp_path: Path) -> None:
    """INFO stays out of server.log; WARNING and ERROR are appended as JSON lines."""
    writer.info("reading 72 bpm")
    writer.warning("slow redis")
    writer.error("failed")
    assert [x["msg"] for x in lines(tmp_path / ls.SERVER_LOG)] == ["slow redis", "failed"]


def test_size_rotation_renames_and_writers_reopen(writer: logging.Logger, tmp_path: Path) -> None:
    """Past max_bytes the file moves to .1 and the next record starts a new server.log."""
    rotator = ls.ServerLogRotator(tmp_path / ls.SERVER_LOG, max_bytes=300, backups=5)
    writer.warning("short")
    assert not rotator.rotate_if_due()
    for i in range(5):
        writer.warning("line %d %s", i, "x" * 50)
    assert rotator.rotate_if_due()
    writer.warning("after rotation")
    assert [x["msg"] for x in lines(tmp_path / ls.SERVER_LOG)] == ["after rotation"]
    assert len(lines(tmp_path / "server.log.1")) == 6


def test_rotation_keeps_backups_files(writer: logging.Logger, tmp_path: Path) -> None:
    """Rotating more often than `backups` drops the oldest; .1 is always the newest."""
    rotator = ls.ServerLogRotator(tmp_path / ls.SERVER_LOG, max_bytes=1024, backups=3)
    for i in range(6):
        writer.warning("generation %d", i)
        rotator.rotate()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["server.log.1", "server.log.2", "server.log.3"]
    assert lines(tmp_path / "server.log.1")[0]["msg"] == "generation 5"
    assert lines(tmp_path / "server.log.3")[0]["msg"] == "generation 3"


def test_age_rotation_after_a_week(writer: logging.Logger, tmp_path: Path) -> None:
    """A small file is rotated once its first line is max_age_s old, not before."""
    now = [time.time()]
    rotator = ls.ServerLogRotator(
        tmp_path / ls.SERVER_LOG, max_bytes=10**9, backups=2, clock=lambda: now[0]
    )
    writer.warning("monday")
    now[0] += ls.WEEK_S - 60
    assert not rotator.rotate_if_due()
    now[0] += 120
    assert rotator.rotate_if_due()
    assert not (tmp_path / ls.SERVER_LOG).exists() and (tmp_path / "server.log.1").exists()


def test_empty_or_missing_file_is_not_rotated(tmp_path: Path) -> None:
    """Nothing to rotate: no file, or an empty one, however old."""
    rotator = ls.ServerLogRotator(tmp_path / ls.SERVER_LOG, 1, 1, max_age_s=0)
    assert not rotator.rotate_if_due()
    (tmp_path / ls.SERVER_LOG).touch()
    assert not rotator.rotate_if_due()


def test_two_writers_both_follow_a_rotation(tmp_path: Path) -> None:
    """Two handlers (as two processes would have) both reopen the new server.log."""
    handlers = [ls.server_log_handler(tmp_path, f"p{i}") for i in range(2)]
    for h in handlers:
        h.handle(_record("before %s"))
    ls.ServerLogRotator(tmp_path / ls.SERVER_LOG, 1, 5).rotate()
    for h in handlers:
        h.handle(_record("after %s"))
        h.close()
    assert [x["component"] for x in lines(tmp_path / ls.SERVER_LOG)] == ["p0", "p1"]
    assert len(lines(tmp_path / "server.log.1")) == 2


def test_rotator_thread_rotates_by_itself(
    writer: logging.Logger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a context manager the rotator checks in a thread until exit."""
    monkeypatch.setattr(ls, "CHECK_S", 0.02)
    writer.warning("x" * 200)
    with ls.ServerLogRotator(tmp_path / ls.SERVER_LOG, max_bytes=100, backups=1):
        deadline = time.monotonic() + 5
        while not (tmp_path / "server.log.1").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
    assert (tmp_path / "server.log.1").exists()


def test_from_settings_uses_log_dir_and_limits(tmp_path: Path) -> None:
    """LOG_DIR, LOG_MAX_BYTES and LOG_BACKUPS come from the settings."""
    env = {"LOG_DIR": str(tmp_path), "LOG_MAX_BYTES": "2048", "LOG_BACKUPS": "2"}
    rotator = ls.ServerLogRotator.from_settings(Settings.from_env(env))
    assert (rotator.path, rotator.max_bytes, rotator.backups) == (tmp_path / "server.log", 2048, 2)
    assert rotator.max_age_s == ls.WEEK_S


def test_default_limits_are_50_mb_and_5_files() -> None:
    """Defaults: 50 MB per file, 5 rotated files kept, LOG_DIR ./log made absolute."""
    s = Settings.from_env({})
    assert (s.log_max_bytes, s.log_backups) == (50 * 1024 * 1024, 5)
    assert s.log_dir == (Path.cwd() / "log").absolute()


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger, its handlers and level restored afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    yield root
    for h in list(root.handlers):
        root.removeHandler(h)
        if h not in saved[0]:
            h.close()
    for h in saved[0]:
        root.addHandler(h)
    root.setLevel(saved[1])


def test_process_logging_json_stderr_and_server_log(
    root_logger: logging.Logger, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Launcher/driver: JSON lines on stderr at LOG_LEVEL, WARNING+ also in server.log."""
    ls.configure_process_logging(Settings(log_dir=tmp_path, log_level="INFO"), "launcher")
    logging.getLogger("heartrate_serve.launcher").info("started")
    logging.getLogger("heartrate_serve.launcher").warning("leftover")
    err = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [x["msg"] for x in err] == ["started", "leftover"]
    assert [x["component"] for x in lines(tmp_path / ls.SERVER_LOG)] == ["launcher"]


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def serve_logger() -> Iterator[_Capture]:
    """A capturing handler on `ray.serve`; heartrate_serve's logger restored afterwards."""
    ours, serve, capture = logging.getLogger(ls.LOGGER), logging.getLogger("ray.serve"), _Capture()
    saved = (list(ours.handlers), ours.level, ours.propagate)
    serve.addHandler(capture)
    yield capture
    serve.removeHandler(capture)
    for h in list(ours.handlers):
        ours.removeHandler(h)
        h.close()
    for h in saved[0]:
        ours.addHandler(h)
    ours.setLevel(saved[1])
    ours.propagate = saved[2]


def test_replica_logging_goes_through_serve_and_server_log(
    serve_logger: _Capture, tmp_path: Path
) -> None:
    """In a replica every record reaches Serve's logger; WARNING+ also reaches server.log."""
    ls.configure_replica_logging(Settings(log_dir=tmp_path, log_level="INFO"))
    ls.configure_replica_logging(Settings(log_dir=tmp_path, log_level="INFO"))  # idempotent
    log = logging.getLogger("heartrate_serve.ingress")
    log.debug("not at INFO")
    log.info("stream opened")
    log.warning("store unavailable")
    assert [r.getMessage() for r in serve_logger.records] == ["stream opened", "store unavailable"]
    assert [x["msg"] for x in lines(tmp_path / ls.SERVER_LOG)] == ["store unavailable"]
