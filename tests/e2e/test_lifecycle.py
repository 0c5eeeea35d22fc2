"""`make run`'s entry point on its own: embedded Redis, SIGTERM / Ctrl-C stop everything, and a
second start reuses the data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import pytest

from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.proto import heartrate_service_pb2_grpc as pb_grpc
from heartrate_serve.runtime.process_sweep import owned_pids
from heartrate_serve.runtime.ray_runtime import free_port

pytestmark = pytest.mark.e2e
START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 60


def _start(data_dir: Path, instance_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(
        GRPC_PORT=str(port),
        METRICS_PORT=str(free_port()),
        DATA_DIR=str(data_dir),
        LOG_DIR=str(data_dir.parent / "log"),
        INSTANCE_DIR=str(instance_dir),
    )
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "heartrate_serve.runtime.launcher"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while "SERVING on" not in log.read_text(errors="replace"):
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        assert time.monotonic() < deadline, "not SERVING in time"
        time.sleep(0.5)
    return proc


def _stop(proc: subprocess.Popen[bytes], sig: int, roots: list[Path]) -> float:
    started = time.monotonic()
    proc.send_signal(sig)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"launcher still running {STOP_TIMEOUT_S} s after {signal.Signals(sig).name}")
    took = time.monotonic() - started
    time.sleep(1)
    assert owned_pids(roots) == [], "processes of the stopped instance are still running"
    return took


def test_sigterm_and_ctrl_c_stop_everything_and_data_survives(tmp_path: Path) -> None:
    """Start with embedded Redis, store a reading, SIGTERM: nothing left. Start again on the
    same DATA_DIR: the reading is there. Ctrl-C (SIGINT) stops it too, nothing left."""
    data = tmp_path / "data"
    instance = Path(tempfile.mkdtemp(prefix="hrs-t-"))  # short: unix socket path limits
    port = free_port()
    proc = _start(data, instance, port, tmp_path / "run1.log")
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        resp = pb_grpc.HeartRateMonitorStub(ch).SubmitHeartRate(
            pb.HeartRateRequest(bpm=77, timestamp=int(time.time()) - 1, user_id="lifecycle")
        )
    assert resp.success
    assert proc.returncode is None
    _stop(proc, signal.SIGTERM, [instance, data])

    instance2 = Path(tempfile.mkdtemp(prefix="hrs-t-"))
    proc = _start(data, instance2, port, tmp_path / "run2.log")
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        status = pb_grpc.HeartRateMonitorStub(ch).GetHeartRateStatus(
            pb.StatusRequest(user_id="lifecycle")
        )
    assert [m.bpm for m in status.recent_measurements] == [77]
    _stop(proc, signal.SIGINT, [instance2, data])
