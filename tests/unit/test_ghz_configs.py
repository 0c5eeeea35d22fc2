"""The ghz configs in loadtest/ghz/ against the compiled contract: ghz is not installed here, so
these checks keep the files from rotting."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message_factory import GetMessageClass

from heartrate_serve.core.alert_feed import watched_users
from heartrate_serve.core.validation import canonical_user_id
from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.service import convert
from heartrate_serve.service.zone_query import zone_query

REPO = Path(__file__).resolve().parents[2]
GHZ_DIR = REPO / "loadtest" / "ghz"
CONFIGS = sorted(GHZ_DIR.glob("*.json"))
SERVICE = pb.DESCRIPTOR.services_by_name["HeartRateMonitor"]
# ghz's call template data (https://ghz.sh/docs/calldata) with sample values.
SAMPLE = {
    "RequestNumber": "17",
    "FullyQualifiedName": "heartrate.HeartRateMonitor.X",
    "MethodName": "X",
    "ServiceName": "HeartRateMonitor",
    "InputName": "HeartRateRequest",
    "OutputName": "HeartRateResponse",
    "IsClientStreaming": "false",
    "IsServerStreaming": "false",
    "Timestamp": "2026-01-02T03:04:05Z",
    "TimestampUnix": "1767323045",
    "TimestampUnixMilli": "1767323045123",
    "TimestampUnixNano": "1767323045123456789",
    "UUID": "0b9d5f0c-3a43-4a4e-9d2c-4ad7b5f8e2a1",
    "WorkerID": "g1c0",
}
TEMPLATE = re.compile(r"\{\{\s*\.(\w+)\s*\}\}")
WRITE_CALLS = {"SubmitHeartRate", "StreamHeartRate", "SubmitHeartRateBatch"}


def render(value: Any, sample: dict[str, str]) -> Any:
    """The data with every {{.Var}} replaced; unknown variables or other actions fail."""
    if isinstance(value, dict):
        return {k: render(v, sample) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, sample) for v in value]
    if isinstance(value, str):
        out = TEMPLATE.sub(lambda m: sample[m.group(1)], value)
        assert "{{" not in out, f"unsupported template action in {value!r}"
        return out
    return value


def load(path: Path) -> dict[str, Any]:
    """A config file as a dict."""
    config: dict[str, Any] = json.loads(path.read_text())
    return config


def method_of(config: dict[str, Any]) -> MethodDescriptor:
    """The RPC a config calls ("package.Service.Method")."""
    package_service, _, method = config["call"].rpartition(".")
    assert package_service == SERVICE.full_name, config["call"]
    assert method in SERVICE.methods_by_name, f"no RPC {method} in {SERVICE.full_name}"
    return SERVICE.methods_by_name[method]


def messages(config: dict[str, Any], sample: dict[str, str]) -> list[Any]:
    """The rendered data parsed into request messages (unknown fields or bad types fail)."""
    method = method_of(config)
    data = config["data"]
    items = data if method.client_streaming else [data]
    cls = GetMessageClass(method.input_type)
    return [json_format.ParseDict(render(d, sample), cls()) for d in items]


def test_every_rpc_has_a_config() -> None:
    """Each RPC of the service is called by at least one config."""
    called = {method_of(load(p)).name for p in CONFIGS}
    assert called == set(SERVICE.methods_by_name)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_options(path: Path) -> None:
    """proto exists (relative to the repo root), insecure, a host, and a bounded run."""
    config = load(path)
    assert (REPO / config["proto"]).is_file()
    assert not Path(config["proto"]).is_absolute()
    assert config["insecure"] is True
    assert re.fullmatch(r"[\w.-]+:\d+", config["host"])
    assert config.get("total") or config.get("duration")
    assert int(config["concurrency"]) >= 1


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_data_shape_matches_streaming_kind(path: Path) -> None:
    """Client-streaming calls send an array of messages, unary calls one object."""
    config = load(path)
    method = method_of(config)
    if method.client_streaming:
        assert isinstance(config["data"], list) and len(config["data"]) > 1
    else:
        assert isinstance(config["data"], dict)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_data_parses_into_request(path: Path) -> None:
    """Rendered data parses into the request message: every field exists with a JSON-compatible
    type."""
    for msg in messages(load(path), SAMPLE):
        assert msg.ByteSize() > 0


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_rendered_requests_pass_service_checks(path: Path) -> None:
    """The rendered requests get past the service's own request checks (user ids, profiles)."""
    config = load(path)
    name = method_of(config).name
    for msg in messages(config, SAMPLE):
        if name in ("SubmitHeartRate", "StreamHeartRate"):
            assert len(convert.reading_from_request(msg, 0).bpm) == 1
        elif name == "SubmitHeartRateBatch":
            assert len(convert.batch_from_request(msg, 0).bpm) == len(msg.bpm)
        elif name == "SetUserProfile":
            convert.profile_from_proto(msg.profile)
        elif name == "CalculateExerciseZones":
            assert zone_query(msg, None, 30).bpm is not None
        elif name == "WatchAlerts":
            assert watched_users(list(msg.user_ids)) == list(msg.user_ids)
        else:
            canonical_user_id(msg.user_id)


WRITE_CONFIGS = [p for p in CONFIGS if method_of(load(p)).name in WRITE_CALLS]


def _readings(config: dict[str, Any], sample: dict[str, str]) -> list[tuple[str, int]]:
    out = []
    for msg in messages(config, sample):
        if hasattr(msg, "timestamps_ms"):
            out += [(msg.user_id, int(t)) for t in msg.timestamps_ms]
        else:
            out.append((msg.user_id, int(msg.timestamp_ms)))
    return out


@pytest.mark.parametrize("path", WRITE_CONFIGS, ids=lambda p: p.stem)
def test_writes_are_never_duplicates(path: Path) -> None:
    """Write calls carry unique (user, timestamp) pairs within a call and across two calls of one
    worker a millisecond apart, so idempotency does not hide writes."""
    config = load(path)
    first = _readings(config, SAMPLE)
    later = {
        **SAMPLE,
        "RequestNumber": "18",
        "TimestampUnixMilli": str(int(SAMPLE["TimestampUnixMilli"]) + 1),
    }
    second = _readings(config, later)
    assert len(set(first)) == len(first)
    assert not set(first) & set(second)
    assert all(ts > 1_600_000_000_000 for _, ts in first)


def test_render_rejects_unknown_variables() -> None:
    """A typo in a template variable fails the render."""
    with pytest.raises(KeyError):
        render({"user_id": "{{.WorkerId}}"}, SAMPLE)
