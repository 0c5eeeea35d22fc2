"""The contract stays wire-compatible with the service it replaces (tests/compat fixture)."""

from __future__ import annotations

import re
import tempfile
from importlib import resources
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
OLD = ROOT / "tests" / "compat" / "heartrate_service_v1.proto"
NEW = ROOT / "proto" / "heartrate_service.proto"


def _descriptor(proto: Path) -> descriptor_pb2.FileDescriptorProto:
    """Compiles one .proto into its FileDescriptorProto with protoc."""
    include = str(resources.files("grpc_tools") / "_proto")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        args = ["protoc", f"-I{proto.parent}", f"-I{include}", f"--descriptor_set_out={out}"]
        assert protoc.main([*args, str(proto)]) == 0, f"protoc failed on {proto}"
        fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    return fds.file[0]


def _messages(fd: descriptor_pb2.FileDescriptorProto) -> dict[str, descriptor_pb2.DescriptorProto]:
    """All messages, nested ones included, by full name."""
    out: dict[str, descriptor_pb2.DescriptorProto] = {}

    def walk(prefix: str, msgs: list[descriptor_pb2.DescriptorProto]) -> None:
        for m in msgs:
            name = f"{prefix}.{m.name}"
            out[name] = m
            walk(name, list(m.nested_type))

    walk(f".{fd.package}", list(fd.message_type))
    return out


def breaking_changes(
    old: descriptor_pb2.FileDescriptorProto, new: descriptor_pb2.FileDescriptorProto
) -> list[str]:
    """Every wire-breaking difference from old to new (removed/renumbered/retyped items)."""
    problems: list[str] = []
    if old.package != new.package:
        problems.append(f"package {old.package} -> {new.package}")
    new_msgs = _messages(new)
    for name, om in _messages(old).items():
        nm = new_msgs.get(name)
        if nm is None:
            problems.append(f"message {name} removed")
            continue
        new_fields = {f.number: f for f in nm.field}
        for f in om.field:
            nf = new_fields.get(f.number)
            if nf is None:
                problems.append(f"{name}.{f.name} (= {f.number}) removed")
                continue
            for attr in ("name", "type", "label", "type_name"):
                if getattr(f, attr) != getattr(nf, attr):
                    problems.append(
                        f"{name}.{f.name} {attr}: {getattr(f, attr)} -> {getattr(nf, attr)}"
                    )
        old_numbers = {f.number for f in om.field}
        for nf in nm.field:
            if nf.number not in old_numbers and any(nf.name == f.name for f in om.field):
                problems.append(f"{name}.{nf.name} renumbered")
    new_enums = {e.name: e for e in new.enum_type}
    for oe in old.enum_type:
        ne = new_enums.get(oe.name)
        if ne is None:
            problems.append(f"enum {oe.name} removed")
            continue
        values = {v.number: v.name for v in ne.value}
        for v in oe.value:
            if values.get(v.number) != v.name:
                problems.append(f"enum {oe.name}.{v.name} = {v.number} changed")
    new_services = {s.name: s for s in new.service}
    for os_ in old.service:
        ns = new_services.get(os_.name)
        if ns is None:
            problems.append(f"service {os_.name} removed")
            continue
        methods = {m.name: m for m in ns.method}
        for m in os_.method:
            nm_ = methods.get(m.name)
            if nm_ is None:
                problems.append(f"rpc {os_.name}.{m.name} removed")
                continue
            for attr in ("input_type", "output_type", "client_streaming", "server_streaming"):
                if getattr(m, attr) != getattr(nm_, attr):
                    problems.append(f"rpc {m.name} {attr} changed")
    return problems


def test_new_contract_keeps_every_original_item() -> None:
    """Every original message, field number/type/name, enum value and RPC is still there."""
    assert breaking_changes(_descriptor(OLD), _descriptor(NEW)) == []


@pytest.mark.parametrize(
    "edit, expected",
    [
        (
            ("int64 timestamp = 2;", "int64 timestamp = 9;"),
            "HeartRateRequest.timestamp (= 2) removed",
        ),
        (
            ("int32 bpm = 1;\n  int64 timestamp = 2;", "int64 bpm = 1;\n  int64 timestamp = 2;"),
            "type",
        ),
        (("HIGH_HEART_RATE = 2;", "HIGH_HEART_RATE = 3;"), "AlertType.HIGH_HEART_RATE"),
        (("int32 zone3_time = 3;", ""), "zone3_time (= 3) removed"),
        (
            ("rpc GetHeartRateStatus(StatusRequest) returns (StatusResponse);", ""),
            "GetHeartRateStatus removed",
        ),
        (("stream HeartRateResponse", "HeartRateResponse"), "server_streaming"),
    ],
)
def test_checker_catches_breaking_edits(
    tmp_path: Path, edit: tuple[str, str], expected: str
) -> None:
    """The comparison fails on a renumbered, retyped or removed field, enum value or RPC."""
    text = OLD.read_text()
    assert edit[0] in text
    broken = tmp_path / "heartrate_service.proto"
    broken.write_text(text.replace(edit[0], edit[1], 1))
    problems = breaking_changes(_descriptor(OLD), _descriptor(broken))
    assert any(expected in p for p in problems), problems


SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")
PASCAL = re.compile(r"^[A-Z][A-Za-z0-9]*$")
UPPER = re.compile(r"^[A-Z][A-Z0-9_]*$")


def test_contract_lint_naming() -> None:
    """buf-lint-style naming: PascalCase messages/services/RPCs, snake_case fields, UPPER enums."""
    fd = _descriptor(NEW)
    bad = [n for n, m in _messages(fd).items() if not PASCAL.match(m.name)]
    bad += [
        f"{n}.{f.name}"
        for n, m in _messages(fd).items()
        for f in m.field
        if not SNAKE.match(f.name)
    ]
    bad += [v.name for e in fd.enum_type for v in e.value if not UPPER.match(v.name)]
    bad += [m.name for s in fd.service for m in s.method if not PASCAL.match(m.name)]
    assert bad == []


def test_added_enums_are_prefixed_and_zero_is_unspecified() -> None:
    """Added enums (not the original AlertType) prefix values and start with *_UNSPECIFIED = 0."""
    fd = _descriptor(NEW)
    for e in fd.enum_type:
        if e.name == "AlertType":
            continue
        prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", e.name).upper() + "_"
        assert all(v.name.startswith(prefix) for v in e.value), e.name
        assert e.value[0].number == 0 and e.value[0].name.endswith("_UNSPECIFIED"), e.name


def test_packed_columnar_fields() -> None:
    """Columnar arrays are repeated scalars, which proto3 packs on the wire by default."""
    msgs = _messages(_descriptor(NEW))
    batch = msgs[".heartrate.HeartRateBatchRequest"]
    for f in batch.field:
        if f.name in ("bpm", "timestamps", "timestamps_ms"):
            assert f.label == descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
            assert not f.options.HasField("packed") or f.options.packed
