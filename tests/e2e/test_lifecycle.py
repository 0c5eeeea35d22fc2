"""`make run`'s entry point on its own: embedded Redis (restarted by the launcher after a kill -9,
with every acknowledged reading), SIGTERM / Ctrl-C stop everything, and a second start reuses the
data (readings and profiles)."""

from __future__ import annotations

import signal
import tempfile
import time
from pathlib import Path

import grpc
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from heartrate_serve.loadtest.service import ServiceProcess
from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.proto import heartrate_service_pb2_grpc as pb_grpc
from heartrate_serve.runtime.process_sweep import owned_pids
from heartrate_serve.runtime.ray_runtime import free_port
from tests.support.service import running_service

pytestmark = pytest.mark.e2e
START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 60
REDIS_BACK_TIMEOUT_S = 30


def _embedded_redis(svc: ServiceProcess) -> psutil.Process:
    assert svc.process is not None
    found = [
        p
        for p in psutil.Process(svc.process.pid).children(recursive=True)
        if p.name() == "redis-server"
    ]
    assert len(found) == 1, found
    return found[0]


def _serving_and_stored(stub: pb_grpc.HeartRateMonitorStub, health: object, user: str) -> bool:
    try:
        ok = health.Check(health_pb2.HealthCheckRequest(), timeout=2)  # type: ignore[attr-defined]
        if ok.status != health_pb2.HealthCheckResponse.SERVING:
            return False
        return bool(
            stub.SubmitHeartRate(pb.HeartRateRequest(bpm=90, user_id=user), timeout=5).success
        )
    except grpc.RpcError:
        return False


def _kill_redis_and_wait_for_recovery(svc: ServiceProcess, user: str) -> None:
    """kill -9 of the launcher's embedded Redis: it is restarted (new pid, same port) and the
    service is SERVING and storing again by itself; readings acknowledged before are there."""
    with grpc.insecure_channel(svc.address) as ch:
        stub = pb_grpc.HeartRateMonitorStub(ch)
        t = int(time.time() * 1000) - 60_000
        sent = [
            pb.HeartRateRequest(bpm=60 + i, timestamp_ms=t + i, user_id=user) for i in range(50)
        ]
        acked = [r.timestamp_ms for r in sent if stub.SubmitHeartRate(r).success]
        assert len(acked) == 50
        old = _embedded_redis(svc)
        old.kill()
        old.wait(10)
        health = health_pb2_grpc.HealthStub(ch)
        deadline = time.monotonic() + REDIS_BACK_TIMEOUT_S
        while not _serving_and_stored(stub, health, user):
            assert time.monotonic() < deadline, f"not back in {REDIS_BACK_TIMEOUT_S} s"
            time.sleep(0.25)
        assert _embedded_redis(svc).pid != old.pid
        got = stub.GetHeartRateStatus(
            pb.StatusRequest(user_id=user, recent_count=100)
        ).recent_measurements
        assert set(acked) <= {m.timestamp_ms for m in got}
    assert "embedded Redis restarted" in svc.log_tail(100_000)


def _stop_cleanly(svc: ServiceProcess, sig: int, roots: list[Path]) -> None:
    """Stops the launcher with sig; it must exit 0 in time and leave no process behind."""
    code = svc.stop(sig, timeout_s=STOP_TIMEOUT_S)
    name = signal.Signals(sig).name
    assert not svc.killed, f"launcher still running {STOP_TIMEOUT_S} s after {name}"
    assert code == 0, f"launcher exited with {code} after {name}:\n{svc.log_tail()}"
    time.sleep(1)
    assert owned_pids(roots) == [], "processes of the stopped instance are still running"


def test_sigterm_and_ctrl_c_stop_everything_and_data_survives(tmp_path: Path) -> None:
    """Start with embedded Redis, store a reading; kill -9 Redis: back by itself, nothing
    acknowledged lost; set a profile; SIGTERM: nothing left. Start again on the same DATA_DIR:
    the reading and the profile are there. Ctrl-C (SIGINT) stops it too, nothing left."""
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
            REDIS_FSYNC="always",  # the kill -9 below loses nothing (everysec: test_redis_outage)
        ) as svc,
    ):
        assert svc.instance_dir == Path(instance)
        with grpc.insecure_channel(svc.address) as ch:
            resp = pb_grpc.HeartRateMonitorStub(ch).SubmitHeartRate(
                pb.HeartRateRequest(bpm=77, timestamp=int(time.time()) - 1, user_id="lifecycle")
            )
        assert resp.success
        assert svc.process is not None and svc.process.poll() is None
        _kill_redis_and_wait_for_recovery(svc, "crash")
        with grpc.insecure_channel(svc.address) as ch:
            pb_grpc.HeartRateMonitorStub(ch).SetUserProfile(
                pb.SetUserProfileRequest(profile=pb.UserProfile(user_id="lifecycle", age=41))
            )
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
            profile = pb_grpc.HeartRateMonitorStub(ch).GetUserProfile(
                pb.GetUserProfileRequest(user_id="lifecycle")
            )
        assert [m.bpm for m in status.recent_measurements] == [77]
        assert profile.profile.age == 41
        _stop_cleanly(svc, signal.SIGINT, [Path(instance), data])
