"""Regenerates the Python stubs next to proto/heartrate_service.proto (`make proto`)."""

from __future__ import annotations

import re
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

PROTO_DIR = Path(__file__).resolve().parent
PROTO_NAME = "heartrate_service.proto"
PACKAGE = "heartrate_serve.proto"
OUTPUTS = ("heartrate_service_pb2.py", "heartrate_service_pb2.pyi", "heartrate_service_pb2_grpc.py")


def generate(out_dir: Path) -> None:
    """Runs protoc on the contract, writing stubs with package-relative imports into out_dir."""
    include = str(resources.files("grpc_tools") / "_proto")
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        str(PROTO_DIR / PROTO_NAME),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed")
    # protoc assumes top-level modules; the stubs live in a package. The messages' __module__
    # must be importable too: Ray pickles them between the proxy and the replicas.
    _rewrite(
        out_dir / "heartrate_service_pb2_grpc.py",
        r"^import heartrate_service_pb2 as",
        f"from {PACKAGE} import heartrate_service_pb2 as",
    )
    _rewrite(
        out_dir / "heartrate_service_pb2.py",
        r"'heartrate_service_pb2'",
        f"'{PACKAGE}.heartrate_service_pb2'",
    )


def _rewrite(path: Path, pattern: str, replacement: str) -> None:
    text, count = re.subn(pattern, replacement, path.read_text(), flags=re.M)
    if count != 1:
        raise RuntimeError(f"expected one {pattern!r} in {path.name}, found {count}")
    path.write_text(text)


def stale_outputs() -> list[str]:
    """Names of committed stubs that differ from a fresh generation."""
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        return [n for n in OUTPUTS if (Path(tmp) / n).read_text() != (PROTO_DIR / n).read_text()]


if __name__ == "__main__":
    generate(PROTO_DIR)
    sys.exit(0)
