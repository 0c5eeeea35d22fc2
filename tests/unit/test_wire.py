"""service/wire.py and deployments/grpc_services.py: bad request bytes become an Undecodable
that the service core answers INVALID_ARGUMENT naming the message type."""

from __future__ import annotations

import grpc
import pytest

from heartrate_serve.core.errors import InvalidRequest
from heartrate_serve.deployments.grpc_services import method_handlers
from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.service.wire import MAX_MESSAGE_BYTES, Undecodable, decoded, lenient


def test_valid_bytes_parse_as_before() -> None:
    msg = pb.HeartRateRequest(user_id="u1", bpm=72, timestamp_ms=1_700_000_000_000)
    assert lenient(pb.HeartRateRequest)(msg.SerializeToString()) == msg
    assert decoded(msg) is msg


@pytest.mark.parametrize("raw", [b"\xff\xff\xff", b"\x0a\x05ab", b"\x08" + b"\xff" * 11])
def test_corrupt_bytes_become_undecodable_naming_the_type(raw: bytes) -> None:
    got = lenient(pb.HeartRateRequest)(raw)
    assert isinstance(got, Undecodable) and got.message == "HeartRateRequest"
    with pytest.raises(InvalidRequest, match="HeartRateRequest: not a valid HeartRateRequest"):
        decoded(got)


def test_oversized_bytes_are_refused_before_parsing() -> None:
    got = lenient(pb.HeartRateBatchRequest)(b"\x00" * (MAX_MESSAGE_BYTES + 1))
    assert isinstance(got, Undecodable) and "over the" in got.reason


def test_every_rpc_is_registered_with_its_kind() -> None:
    class Servicer:
        def __getattr__(self, name: str) -> object:
            return lambda *a: None

    handlers = method_handlers(Servicer())
    service = pb.DESCRIPTOR.services_by_name["HeartRateMonitor"]
    assert set(handlers) == {m.name for m in service.methods}
    stream = handlers["StreamHeartRate"]
    assert stream.request_streaming and stream.response_streaming
    unary = handlers["SubmitHeartRate"]
    assert not unary.request_streaming and not unary.response_streaming
    assert isinstance(unary.request_deserializer(b"\xff"), Undecodable)
    assert isinstance(unary, grpc.RpcMethodHandler)
