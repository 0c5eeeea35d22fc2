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
    grpc_file = out_dir / "heartrate_service_pb2_grpc.py"
    text = grpc_file.read_text()
    # protoc writes a top-level import; the stubs live in a package.
    text = re.sub(r"^import heartrate_service_pb2 as", f"from {PACKAGE} import heartrate_service_pb2 as", text, flags=re.M)
    grpc_file.write_text(text)


def stale_outputs() -> list[str]:
    """Names of committed stubs that differ from a fresh generation."""
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        return [n for n in OUTPUTS if (Path(tmp) / n).read_text() != (PROTO_DIR / n).read_text()]


if __name__ == "__main__":
    generate(PROTO_DIR)
    sys.exit(0)
