"""RedisSupervisor on a real embedded redis-server: a kill -9 is followed by a restart on the same
port with every acknowledged reading (AOF replay), for both fsync policies; a crash loop backs
off; a stop on purpose is not a crash."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from heartrate_serve.core.alerts import AlertRules
from heartrate_serve.core.errors import StoreUnavailable
from heartrate_serve.runtime.embedded_redis import EmbeddedRedis, answers_ping
from heartrate_serve.runtime.redis_supervisor import RedisSupervisor
from heartrate_serve.store.store import ReadingStore

T0 = 1_790_000_000_000
BATCH = 50


def _until(predicate: object, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError(f"not within {timeout_s} s")


def _fast(redis: EmbeddedRedis) -> RedisSupervisor:
    return RedisSupervisor(
        redis, check_interval_s=0.05, backoff_initial_s=0.1, backoff_max_s=0.8, stable_after_s=5
    )


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("fsync", ["everysec", "always"])
async def test_a_killed_redis_comes_back_with_every_acknowledged_reading(
    tmp_path: Path, fsync: str
) -> None:
    """Writers keep writing through a kill -9 of Redis: writes fail (StoreUnavailable) while it is
    down, the supervisor restarts it on the same port, and every batch that was acknowledged,
    before or after the crash, is read back."""
    redis = EmbeddedRedis(tmp_path / "data", fsync=fsync)
    redis.start()
    supervisor = _fast(redis)
    supervisor.start()
    store = ReadingStore(redis.url, retention_ms=30 * 86_400_000, alert_rules=AlertRules())
    acked: list[int] = []
    failed = 0
    try:
        old_pid, port = redis.pid, redis.port
        assert old_pid is not None

        async def write(i: int) -> None:
            nonlocal failed
            ts = T0 + i * BATCH * 1000 + np.arange(BATCH, dtype=np.int64) * 1000
            try:
                await store.write_batch(
                    ["u"] * BATCH,
                    ts,
                    np.full(BATCH, 70, np.int32),
                    np.zeros(BATCH, np.uint8),
                    T0 + 10**9,
                )
            except StoreUnavailable:
                failed += 1
            else:
                acked.append(i)

        i = 0
        killed_at = None
        while killed_at is None or time.monotonic() - killed_at < 30:
            await asyncio.gather(*(write(i + k) for k in range(4)))
            i += 4
            if killed_at is None and len(acked) >= 200:
                os.kill(old_pid, signal.SIGKILL)  # a crash, behind the supervisor's back
                killed_at = time.monotonic()
            elif killed_at is not None and redis.pid not in (None, old_pid) and len(acked) >= 240:
                break
        assert killed_at is not None and failed > 0, "the kill was not seen by any write"
        assert supervisor.restarts == 1 and redis.port == port and redis.pid != old_pid
        got = await store.range("u", 0, T0 + 10**12)
        want = np.sort(
            np.concatenate(
                [T0 + j * BATCH * 1000 + np.arange(BATCH, dtype=np.int64) * 1000 for j in acked]
            )
        )
        stored = set(got.ts_ms.tolist())
        assert set(want.tolist()) <= stored, f"{len(set(want.tolist()) - stored)} acked lost"
        assert len(acked) >= 240  # writes went on after the restart
    finally:
        await store.aclose()
        supervisor.stop()
        redis.stop()


def test_a_crash_loop_backs_off_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """While the port is taken, every restart fails; the tries thin out (doubling delays up to
    the cap) and each failure is logged; once the port is free, Redis is back."""
    caplog.set_level(logging.INFO, logger="heartrate_serve.redis_supervisor")
    redis = EmbeddedRedis(tmp_path / "data")
    redis.start()
    supervisor = _fast(redis)
    supervisor.start()
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        pid, port = redis.pid, redis.port
        assert pid is not None and port is not None
        os.kill(pid, signal.SIGKILL)
        _until(lambda: not answers_ping(port), 5)
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        time.sleep(3.0)
        fails = [r for r in caplog.records if "restart failed" in r.getMessage()]
        delays = [float(r.getMessage().split("next try in ")[1].split(" s")[0]) for r in fails]
        # Waits of 0.1, 0.2, 0.4, 0.8, 0.8 s (plus each failed start): a few tries in 3 s.
        assert 2 <= len(fails) <= 7 and delays[:3] == [0.2, 0.4, 0.8][: len(delays[:3])], delays
        assert all(d <= 0.8 for d in delays)
        gaps = np.diff([r.created for r in fails])
        assert all(g >= d - 0.02 for g, d in zip(gaps, delays, strict=False)), (gaps, delays)
        assert any("exited with code" in r.getMessage() for r in caplog.records)
        blocker.close()
        _until(lambda: supervisor.restarts == 1 and answers_ping(port), 10)
    finally:
        blocker.close()
        supervisor.stop()
        redis.stop()


def test_a_stop_on_purpose_is_not_restarted(tmp_path: Path) -> None:
    """supervisor.stop() then redis.stop() (what the launcher does on SIGTERM): it stays down."""
    redis = EmbeddedRedis(tmp_path / "data")
    redis.start()
    port = redis.port
    assert port is not None
    supervisor = _fast(redis)
    supervisor.start()
    supervisor.stop()
    redis.stop()
    time.sleep(0.5)
    assert not answers_ping(port) and supervisor.restarts == 0
