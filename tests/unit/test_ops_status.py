"""deployments/ops_status.py without a cluster: finding the instance and formatting status."""

from __future__ import annotations

import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

from heartrate_serve.runtime import status as ops_status
from heartrate_serve.settings import Settings


def _instance(root: Path, name: str, port: int) -> Path:
    session = root / name / "ray" / "session_2026"
    session.mkdir(parents=True)
    (session / "gcs_server_port_abc").write_text(f"{port}\n")
    (root / name / "ray" / "session_latest").symlink_to(session)
    return root / name


def test_gcs_address_from_session_folder(tmp_path: Path) -> None:
    """The GCS port file of session_latest gives a loopback address."""
    assert ops_status.gcs_address(_instance(tmp_path, "hrs-a", 4321)) == "127.0.0.1:4321"


def test_gcs_address_without_session_is_a_lookup_error(tmp_path: Path) -> None:
    """An instance folder without a Ray session (stopped service) is reported."""
    with pytest.raises(LookupError):
        ops_status.gcs_address(tmp_path)


def test_find_instance_prefers_setting_then_a_live_one(tmp_path: Path) -> None:
    """INSTANCE_DIR wins; otherwise the instance whose GCS port accepts connections."""
    assert ops_status.find_instance(Settings(instance_dir=tmp_path)) == tmp_path
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        live = _instance(tmp_path, "hrs-live", listener.getsockname()[1])
        with socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            _instance(tmp_path, "hrs-dead", free.getsockname()[1])
        assert ops_status.find_instance(Settings(), tmp=tmp_path) == live


def test_find_instance_without_any_is_a_lookup_error(tmp_path: Path) -> None:
    """No running instance: a clear LookupError (the command exits 2)."""
    with pytest.raises(LookupError, match="INSTANCE_DIR"):
        ops_status.find_instance(Settings(), tmp=tmp_path)


def _status(dep_status: str, states: dict[str, int]) -> SimpleNamespace:
    dep = SimpleNamespace(status=dep_status, replica_states=states, message="")
    app = SimpleNamespace(status="RUNNING", message="", deployments={"HeartRateIngress": dep})
    return SimpleNamespace(applications={"heartrate": app}, proxies={"n1": "HEALTHY"})


def test_status_lines_show_replicas_per_deployment() -> None:
    """One line per deployment with its health and replica states; all healthy is ok."""
    lines, ok = ops_status.status_lines(_status("HEALTHY", {"RUNNING": 2}))
    assert lines[0] == "application heartrate: RUNNING"
    assert lines[1].split() == ["HeartRateIngress", "HEALTHY", "replicas", "RUNNING=2"]
    assert lines[-1] == "proxies: HEALTHY" and ok


def test_status_lines_not_ok_when_a_deployment_is_unhealthy() -> None:
    """An UNHEALTHY deployment makes the result not ok (exit code 1)."""
    _, ok = ops_status.status_lines(_status("UNHEALTHY", {"RUNNING": 1, "STARTING": 1}))
    assert not ok


def test_main_without_instance_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A folder that holds no Ray session: exit code 2 and an error line."""
    assert ops_status.main([str(tmp_path)]) == 2
    assert "no Ray session" in capsys.readouterr().err


def test_status_enums_print_as_their_values() -> None:
    """Serve's str enums print as RUNNING / HEALTHY, not ApplicationStatus.RUNNING."""
    from enum import Enum

    class Status(str, Enum):  # noqa: UP042 (as Serve declares its status enums)
        RUNNING = "RUNNING"
        HEALTHY = "HEALTHY"

    status = _status(Status.HEALTHY, {"RUNNING": 1})  # type: ignore[arg-type]
    status.applications["heartrate"].status = Status.RUNNING
    lines, ok = ops_status.status_lines(status)
    assert lines[0] == "application heartrate: RUNNING" and "HEALTHY" in lines[1] and ok
