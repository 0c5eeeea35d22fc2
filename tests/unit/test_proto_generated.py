"""The committed Python stubs are what `make proto` generates from the contract."""

from __future__ import annotations

import importlib

from heartrate_serve.proto import generate


def test_committed_stubs_match_a_fresh_generation() -> None:
    """Regenerating the stubs gives no diff (run `make proto` after editing the .proto)."""
    assert generate.stale_outputs() == []


def test_stubs_import_under_the_project_namespace() -> None:
    """The stubs import as heartrate_serve.proto.*, never as a top-level `proto` package."""
    grpc_mod = importlib.import_module("heartrate_serve.proto.heartrate_service_pb2_grpc")
    assert (
        grpc_mod.heartrate__service__pb2.__name__ == "heartrate_serve.proto.heartrate_service_pb2"
    )
    assert hasattr(grpc_mod, "HeartRateMonitorStub")
