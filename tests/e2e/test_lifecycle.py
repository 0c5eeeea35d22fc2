"""`make run`'s entry point on its own: embedded Redis, SIGTERM / Ctrl-C stop everything, and a
second start reuses the data."""

from __future__ import annotations

import signal
import tempfile
import time
from pathlib import Path

import grpc
import pytest

from heartrate_serve.loadtest.service import ServiceProcess
from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.proto import heartrate_service_pb2_grpc as pb_grpc
from heartrate_serve.runtime.process_sweep import owned_pids
from heartrate_serve.runtime.ray_runtime import free_port
from tests.support.service import running_service

pytestmark = pytest.mark.e2e
START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 60


def _stop_cleanly(svc: ServiceProcess, sig: int, roots: list[Path]) -> None:
    """Stops the launcher with sig; it must exit 0 in time and leave no process behind."""
    code = svc.stop(sig, timeout_s=STOP_TIMEOUT_S)
    name = signal.Signals(sig).name
    assert not svc.killed, f"launcher still running {STOP_TIMEOUT_S} s after {name}"
    assert code == 0, f"launcher exited with {code} after {name}:\n{svc.log_tail()}"
    time.sleep(1)
    assert owned_pids(roots) == [], "processes of the stopped instance are still running"


def test_sigterm_and_ctrl_c_stop_everything_and_data_survives(tmp_path: Path) -> None:
    """Start with embedded Redis, store a reading, SIGTERM: nothing left. Start again on the
    same DATA_DIR: the reading is there. Ctrl-C (SIGINT) stops it too, nothing left."""
    data = tmp_path / "data"
    port = free_port()
    # short instance folders: unix socket path limits
    with (
        tempfile.TemporaryDirectory(prefix="hrs-t-") as instance,
        running_service(
            tmp_path / "run1",
            grpc_port=port,
            timeout_s=START_TIMEOUT_S,
            DATA_DIR=str(data),
            INSTANCE_DIR=instance,
        ) as svc,
    ):
        assert svc.instance_dir == Path(instance)
        with grpc.insecure_channel(svc.address) as ch:
            resp = pb_grpc.HeartRateMonitorStub(ch).SubmitHeartRate(
                pb.HeartRateRequest(bpm=77, timestamp=int(time.time()) - 1, user_id="lifecycle")
            )
        assert resp.success
        assert svc.process is not None and svc.process.poll() is None
        _stop_cleanly(svc, signal.SIGTERM, [Path(instance), data])

    with (
        tempfile.TemporaryDirectory(prefix="hrs-t-") as instance,
        running_service(
            tmp_path / "run2",
            grpc_port=port,
            timeout_s=START_TIMEOUT_S,
            DATA_DIR=str(data),
            INSTANCE_DIR=instance,
        ) as svc,
    ):
        with grpc.insecure_channel(svc.address) as ch:
            status = pb_grpc.HeartRateMonitorStub(ch).GetHeartRateStatus(
                pb.StatusRequest(user_id="lifecycle")
            )
        assert [m.bpm for m in status.recent_measurements] == [77]
        _stop_cleanly(svc, signal.SIGINT, [Path(instance), data])
