"""An old client: stubs built from tests/compat/heartrate_service_v1.proto only (no user_id, no
added fields). Run in its own process, since its messages share the `heartrate` package name with
the new contract's. Prints one JSON object with what it saw."""

from __future__ import annotations

import json
import sys
import time

import grpc
import heartrate_service_v1_pb2 as pb  # generated from the v1 fixture (PYTHONPATH)
import heartrate_service_v1_pb2_grpc as pb_grpc


def main(address: str) -> None:
    """Exercises the four original RPCs the way an old client does."""
    out: dict[str, object] = {}
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.HeartRateMonitorStub(channel)
        ok = stub.SubmitHeartRate(pb.HeartRateRequest(bpm=72, timestamp=int(time.time()) - 5))
        bad = stub.SubmitHeartRate(pb.HeartRateRequest(bpm=250))
        high = stub.SubmitHeartRate(pb.HeartRateRequest(bpm=160))
        out["submit"] = [
            [r.success, r.error, r.alert_triggered, r.alert_type] for r in (ok, bad, high)
        ]
        reqs = iter([pb.HeartRateRequest(bpm=b) for b in (70, 20, 45)])
        out["stream"] = [
            [r.success, bool(r.error), r.alert_type] for r in stub.StreamHeartRate(reqs)
        ]
        status = stub.GetHeartRateStatus(pb.StatusRequest(recent_count=3))
        out["status"] = {
            "n": len(status.recent_measurements),
            "alert_active": status.alert_active,
            "alert_type": status.alert_type,
            "max": status.stats.max_bpm,
        }
        ms = [
            pb.HeartRateMeasurement(bpm=b, timestamp=1_700_000_000 + 10 * i)
            for i, b in enumerate([100, 110, 126, 150, 170, 85])
        ]
        zones = stub.CalculateExerciseZones(pb.ExerciseZoneRequest(age=40, measurements=ms))
        out["zones"] = [
            zones.zone1_time,
            zones.zone2_time,
            zones.zone3_time,
            zones.total_duration,
            round(zones.average_heart_rate, 3),
        ]
        try:
            stub.CalculateExerciseZones(pb.ExerciseZoneRequest(age=0, measurements=ms))
            out["zones_age0"] = "OK"
        except grpc.RpcError as err:
            out["zones_age0"] = err.code().name
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
