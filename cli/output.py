"""Output of the `heartrate` client: times, one reading's answer, running counts, printing."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from heartrate_serve.cli.inputs import Reading
from heartrate_serve.proto import heartrate_service_pb2 as pb

ALERT_NAMES = {pb.LOW_HEART_RATE: "LOW", pb.HIGH_HEART_RATE: "HIGH"}

Json = dict[str, Any]


def format_ts_ms(ms: int) -> str:
    """Unix ms as ISO 8601 UTC with milliseconds; '-' for 0 (no time)."""
    if ms <= 0:
        return "-"
    dt = datetime.fromtimestamp(ms / 1000, UTC)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def format_duration(seconds: float) -> str:
    """Seconds as m:ss or h:mm:ss, rounded to whole seconds."""
    total = int(round(seconds))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def alert_name(alert_type: int) -> str | None:
    """'LOW' / 'HIGH' for an AlertType, None for NONE."""
    return ALERT_NAMES.get(alert_type)  # type: ignore[call-overload, no-any-return]


def reject_name(reason: int) -> str | None:
    """The short name of a RejectReason (e.g. BPM_OUT_OF_RANGE), None when unspecified."""
    if not reason:
        return None
    try:
        name: str = pb.RejectReason.Name(reason)
        return name.removeprefix("REJECT_REASON_")
    except ValueError:
        return str(reason)


def outcome(resp: pb.HeartRateResponse) -> str:
    """'stored', 'duplicate' or 'rejected' for one reading's answer."""
    if not resp.success:
        return "rejected"
    return "duplicate" if resp.duplicate else "stored"


def response_dict(resp: pb.HeartRateResponse, reading: Reading | None = None) -> Json:
    """One reading's answer as a JSON-ready dict (with the sent bpm when the reading is known)."""
    out: Json = {"result": outcome(resp)}
    if reading is not None:
        out["bpm"] = reading.bpm
    out.update(
        timestamp_ms=resp.timestamp_ms,
        alert=alert_name(resp.alert_type) if resp.alert_triggered else None,
        error=resp.error or None,
        reject_reason=reject_name(resp.reject_reason),
    )
    return out


def response_text(resp: pb.HeartRateResponse, reading: Reading | None = None) -> str:
    """One reading's answer as a human line, e.g. '72 bpm @ ...: stored ALERT HIGH'."""
    prefix = f"{reading.bpm} bpm @ {format_ts_ms(resp.timestamp_ms)}: " if reading else ""
    result = outcome(resp)
    if result == "rejected":
        reason = reject_name(resp.reject_reason)
        return f"{prefix}rejected: {resp.error or 'no reason given'}" + (
            f" ({reason})" if reason else ""
        )
    if result == "duplicate":
        return f"{prefix}duplicate: already stored, nothing written"
    text = f"{prefix}stored" if prefix else f"stored at {format_ts_ms(resp.timestamp_ms)}"
    if resp.alert_triggered:
        text += f" ALERT {alert_name(resp.alert_type) or 'NONE'}"
    return text


@dataclass
class Tally:
    """Running counts of a stream or simulation; accepted = newly stored (not duplicate)."""

    sent: int = 0
    acked: int = 0
    accepted: int = 0
    rejected: int = 0
    alerts: int = 0
    duplicates: int = 0
    malformed: int = 0

    def add(self, resp: pb.HeartRateResponse) -> None:
        """Counts one answer."""
        self.acked += 1
        result = outcome(resp)
        self.accepted += result == "stored"
        self.rejected += result == "rejected"
        self.duplicates += result == "duplicate"
        self.alerts += bool(resp.success and resp.alert_triggered)

    def text(self) -> str:
        """The counts as one human line."""
        return ", ".join(f"{k} {v}" for k, v in asdict(self).items())


def emit(as_json: bool, obj: Json, lines: Iterable[str]) -> None:
    """Prints one result: one JSON object line, or the human lines."""
    if as_json:
        print(json.dumps(obj), flush=True)
    else:
        for line in lines:
            print(line, flush=True)


def warn(message: str) -> None:
    """One line on stderr."""
    print(message, file=sys.stderr, flush=True)
