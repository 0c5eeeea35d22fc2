"""The `heartrate` entry point: default address, RPC error reports and exit codes of main."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from heartrate_serve.cli import commands as cli_commands
from heartrate_serve.cli import exit_codes
from heartrate_serve.cli import main as cli
from heartrate_serve.settings import Settings


def test_default_address_comes_from_settings() -> None:
    """The default address is 127.0.0.1 on the settings' gRPC port."""
    assert cli_commands.default_address(Settings(grpc_port=6000)) == "127.0.0.1:6000"
    assert (
        cli_commands.default_address(Settings.from_env({"GRPC_PORT": "6001"})) == "127.0.0.1:6001"
    )


@pytest.mark.parametrize(
    ("code", "details", "exit_code", "message"),
    [
        ("UNAVAILABLE", "failed to connect to all addresses; last error: Connection refused", 3,
         "error: cannot reach h:1 (is the service running?)"),
        ("UNAVAILABLE", "DNS resolution failed for nohost:1", 3, "error: cannot reach h:1"),
        ("UNAVAILABLE", "errors resolving x.invalid:1: Domain name not found", 3,
         "error: cannot reach h:1"),
        ("UNAVAILABLE", "Redis is down", 2, "error: UNAVAILABLE: Redis is down"),
        ("INVALID_ARGUMENT", "age must be > 0", 2, "error: INVALID_ARGUMENT: age must be > 0"),
        ("NOT_FOUND", "no profile for ann", 2, "error: NOT_FOUND: no profile for ann"),
    ],
)  # fmt: skip
def test_rpc_error_report(code: str, details: str, exit_code: int, message: str) -> None:
    """gRPC errors exit 2 with code and details; an unreachable service exits 3."""
    got_code, got_message = exit_codes.rpc_error_report(code, details, "h:1")
    assert got_code == exit_code and got_message.startswith(message)


def _closed_port() -> int:
    """A local TCP port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_main_unreachable_service_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    """A refused connection gives 'cannot reach <address>' and exit code 3."""
    address = f"127.0.0.1:{_closed_port()}"
    assert cli.main(["--address", address, "--timeout", "5", "status"]) == 3
    assert f"cannot reach {address}" in capsys.readouterr().err


def test_main_missing_file_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unreadable input file is an input error (exit 1), reported before any RPC."""
    assert cli.main(["--address", "127.0.0.1:1", "batch", str(tmp_path / "nope.csv")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_main_file_without_readings_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file with only bad lines reports each of them and exits 1 without calling the service."""
    path = tmp_path / "bad.csv"
    path.write_text("oops\n\n# c\n1,2,3\n")
    assert cli.main(["--address", "127.0.0.1:1", "zones", "--age", "30", str(path)]) == 1
    err = capsys.readouterr().err
    assert "line 1" in err and "line 4" in err and "no readings" in err
