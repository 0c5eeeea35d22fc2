"""An old client: stubs built from tests/compat/heartrate_service_v1.proto only (no user_id, no
added fields). Run in its own process, since its messages share the `heartrate` package name with
the new contract's. Reads the cases of tests/support/replaced_service.py as JSON on stdin, runs
each against the address and prints what it saw, one JSON object per case, in order."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import grpc
import heartrate_service_v1_pb2 as pb  # generated from the v1 fixture (PYTHONPATH)
import heartrate_service_v1_pb2_grpc as pb_grpc
from google.protobuf import json_format

REQUESTS = {
    "SubmitHeartRate": pb.HeartRateRequest,
    "StreamHeartRate": pb.HeartRateRequest,
    "GetHeartRateStatus": pb.StatusRequest,
    "CalculateExerciseZones": pb.ExerciseZoneRequest,
}


def _message(rpc: str, fields: dict[str, Any]) -> Any:
    fields = dict(fields)
    if isinstance(fields.get("timestamp"), str):  # "NOW-5": seconds before now
        fields["timestamp"] = int(time.time()) - int(fields["timestamp"].split("-")[1])
    return json_format.ParseDict(fields, REQUESTS[rpc]())


def _plain(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def run(stub: Any, case: dict[str, Any]) -> dict[str, Any]:
    rpc = case["rpc"]
    try:
        if rpc == "StreamHeartRate":
            answers = stub.StreamHeartRate(iter([_message(rpc, r) for r in case["request"]]))
            return {"code": "OK", "stream": [_plain(a) for a in answers]}
        answer = getattr(stub, rpc)(_message(rpc, case["request"]), timeout=30)
        return {"code": "OK", "response": _plain(answer)}
    except grpc.RpcError as error:
        return {"code": error.code().name, "details": error.details()}


def main(address: str) -> None:
    cases = json.load(sys.stdin)
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.HeartRateMonitorStub(channel)
        print(json.dumps([run(stub, case) for case in cases]))


if __name__ == "__main__":
    main(sys.argv[1])
