"""The gRPC registration of heartrate.HeartRateMonitor that serve_config.yaml names: as the
generated add_HeartRateMonitorServicer_to_server, but with lenient request deserializers
(service/wire.py), so that bytes that are not a message reach the service core and are answered
INVALID_ARGUMENT (a per-reading error in a stream) rather than UNKNOWN, and a stream goes on
past one bad message. Serve keeps the request deserializer when it routes the methods to the
replicas."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import message_factory

from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.service.wire import lenient

SERVICE = "heartrate.HeartRateMonitor"
_KINDS = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def method_handlers(servicer: Any) -> dict[str, grpc.RpcMethodHandler]:
    """One handler per RPC of the service descriptor (so a new RPC cannot be forgotten)."""
    service = pb.DESCRIPTOR.services_by_name["HeartRateMonitor"]
    handlers = {}
    for method in service.methods:
        request = message_factory.GetMessageClass(method.input_type)
        response = message_factory.GetMessageClass(method.output_type)
        kind = _KINDS[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = kind(
            getattr(servicer, method.name),
            request_deserializer=lenient(request),
            response_serializer=response.SerializeToString,
        )
    return handlers


def add_HeartRateMonitorServicer_to_server(servicer: Any, server: Any) -> None:  # noqa: N802
    """Registers servicer on server (a grpc / grpc.aio server, or Serve's gRPC server)."""
    handlers = method_handlers(servicer)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
