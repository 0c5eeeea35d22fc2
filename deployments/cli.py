"""`heartrate`: the command-line client of the heart-rate gRPC service.

Parsing and formatting are pure functions (plain values and protobuf messages in and out); only
the `cmd_*` handlers, `main` and the simulator touch the network, files and the terminal.

Exit codes: 0 success, 1 bad input (file, settings, no readings), 2 a gRPC error (and argparse
usage errors), 3 the service cannot be reached, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import os
import re
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

import grpc
import numpy as np
from numpy.typing import NDArray

from heartrate_serve.deployments.settings import Settings, SettingsError
from heartrate_serve.deployments.workouts import workout_bpm
from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.proto import heartrate_service_pb2_grpc as pb_grpc

EXIT_OK = 0
EXIT_INPUT = 1
EXIT_RPC = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
# A bare number at least this large is Unix milliseconds, smaller ones are Unix seconds
# (1e11 s is the year 5138; 1e11 ms is 1973, before any real wearable reading).
MS_THRESHOLD = 100_000_000_000
# Readings sent without a timestamp to zones/batch are spaced this far apart (1 Hz).
FILL_STEP_MS = 1000

ZONE_MODELS = {
    "percent": "ZONE_MODEL_PERCENT_HRMAX",
    "reserve": "ZONE_MODEL_HEART_RATE_RESERVE",
    "custom": "ZONE_MODEL_CUSTOM",
}
FORMULAS = {
    name: f"HR_MAX_FORMULA_{name.upper()}" for name in ("fox", "tanaka", "gellish", "gulati")
}
SEXES = {"male": "SEX_MALE", "female": "SEX_FEMALE"}
ALERT_NAMES = {pb.LOW_HEART_RATE: "LOW", pb.HIGH_HEART_RATE: "HIGH"}
UNREACHABLE_MARKERS = (
    "failed to connect",
    "connection refused",
    "dns resolution failed",
    "errors resolving",
    "domain name not found",
    "name or service not known",
    "no route to host",
    "network is unreachable",
)

Json = dict[str, Any]


class InputError(Exception):
    """Input the client cannot use (unreadable file, no readings, bad settings)."""


# --- time ---------------------------------------------------------------------------------


def now_ms() -> int:
    """The current Unix time in milliseconds."""
    return time.time_ns() // 1_000_000


def number_to_ms(value: float) -> int:
    """A bare number as Unix ms: seconds (fractions allowed), or ms when >= MS_THRESHOLD."""
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"timestamp must be a finite number >= 0, got {value!r}")
    ms = round(value if value >= MS_THRESHOLD else value * 1000)
    if ms > INT64_MAX:
        raise ValueError(f"timestamp too large: {value!r}")
    return ms


def parse_time_ms(text: str) -> int:
    """Unix seconds, Unix milliseconds or ISO 8601 (naive means UTC) as Unix milliseconds."""
    text = text.strip()
    try:
        return number_to_ms(float(text))
    except ValueError:
        if re.fullmatch(r"[-+.\deE]+|nan|inf|-inf", text, re.IGNORECASE):
            raise
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a timestamp: {text!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return number_to_ms(dt.timestamp())


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


# --- input lines --------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """One parsed input reading; timestamp_ms 0 means none given (the server's now)."""

    bpm: int
    timestamp_ms: int = 0


@dataclass(frozen=True)
class BadLine:
    """An input line that could not be parsed, with why."""

    lineno: int
    text: str
    reason: str

    def message(self) -> str:
        """The line as a one-line report."""
        return f"line {self.lineno}: {self.reason}: {self.text!r}"


def parse_bpm(value: object) -> int:
    """A bpm from a string or JSON value: an integer in int32 range (the server checks bands)."""
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"bpm is not a number: {value!r}") from None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"bpm must be an integer, got {value!r}")
    if not -INT32_MAX <= value <= INT32_MAX:
        raise ValueError(f"bpm out of int32 range: {value}")
    return value


def _json_time_ms(obj: dict[str, Any]) -> int:
    """The timestamp of a JSON reading: timestamp_ms (ms) wins over timestamp (s, ms or ISO)."""
    ms = obj.get("timestamp_ms")
    if ms not in (None, 0):
        if isinstance(ms, bool) or not isinstance(ms, int) or not 0 <= ms <= INT64_MAX:
            raise ValueError(f"timestamp_ms must be an integer >= 0, got {ms!r}")
        return ms
    ts = obj.get("timestamp")
    if ts is None:
        return 0
    if isinstance(ts, str):
        return parse_time_ms(ts)
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        raise ValueError(f"timestamp must be a number or ISO 8601 string, got {ts!r}")
    return number_to_ms(float(ts))


def _reading_from_json(text: str) -> Reading:
    """A reading from a JSON object line {"bpm": .., "timestamp": .. | "timestamp_ms": ..}."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc.msg}") from None
    if not isinstance(obj, dict) or "bpm" not in obj:
        raise ValueError('a JSON line must be an object with a "bpm" key')
    return Reading(parse_bpm(obj["bpm"]), _json_time_ms(obj))


def parse_line(line: str) -> Reading | None:
    """One input line: 'bpm', 'timestamp,bpm' or a JSON object; None for blank/# comment lines."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    if text.startswith("{"):
        return _reading_from_json(text)
    fields = (
        [f.strip() for f in re.split(r"[,;]", text)] if re.search(r"[,;]", text) else text.split()
    )
    if "" in fields:
        raise ValueError("empty field")
    if len(fields) == 1:
        return Reading(parse_bpm(fields[0]))
    if len(fields) == 2:
        return Reading(parse_bpm(fields[1]), parse_time_ms(fields[0]))
    raise ValueError(f"expected 'bpm' or 'timestamp,bpm', got {len(fields)} fields")


def is_header(line: str) -> bool:
    """True for a CSV header line such as 'timestamp,bpm' (skipped silently)."""
    text = line.strip().lower()
    return "bpm" in text and re.fullmatch(r"[a-z_\s,;\"']+", text) is not None


def parse_lines(lines: Iterable[str]) -> Iterator[Reading | BadLine]:
    """Readings and bad lines, lazily, in input order; headers, blanks and comments skipped."""
    for lineno, line in enumerate(lines, 1):
        try:
            reading = parse_line(line)
        except (ValueError, OverflowError, RecursionError) as exc:
            if not is_header(line):
                yield BadLine(lineno, line.strip(), str(exc))
            continue
        if reading is not None:
            yield reading


def fill_timestamps(stamps: Sequence[int], now: int, step_ms: int = FILL_STEP_MS) -> list[int]:
    """Missing (0) timestamps filled at step_ms spacing from their neighbours, else ending now."""
    out = list(stamps)
    known = [i for i, t in enumerate(out) if t]
    if not known:
        return [now - (len(out) - 1 - i) * step_ms for i in range(len(out))]
    for i in range(known[0] - 1, -1, -1):
        out[i] = out[i + 1] - step_ms
    for i in range(known[0] + 1, len(out)):
        out[i] = out[i] or out[i - 1] + step_ms
    return out


# --- requests -----------------------------------------------------------------------------


def reading_request(reading: Reading, user_id: str) -> pb.HeartRateRequest:
    """The HeartRateRequest for one reading (timestamp_ms 0: stamped by the server)."""
    return pb.HeartRateRequest(bpm=reading.bpm, timestamp_ms=reading.timestamp_ms, user_id=user_id)


def submit_request(args: argparse.Namespace) -> pb.HeartRateRequest:
    """The request of `submit` from its parsed arguments."""
    ms = args.timestamp_ms if args.timestamp_ms is not None else args.timestamp
    return reading_request(Reading(args.bpm, ms or 0), args.user)


def status_request(args: argparse.Namespace) -> pb.StatusRequest:
    """The request of `status` from its parsed arguments."""
    return pb.StatusRequest(recent_count=args.recent, user_id=args.user)


def batch_request(readings: Sequence[Reading], user_id: str, now: int) -> pb.HeartRateBatchRequest:
    """A columnar batch; readings without a timestamp are spaced 1 s apart (see fill_timestamps)."""
    stamps = fill_timestamps([r.timestamp_ms for r in readings], now)
    return pb.HeartRateBatchRequest(
        user_id=user_id, bpm=[r.bpm for r in readings], timestamps_ms=stamps
    )


def set_enum_options(msg: Any, model: str | None, formula: str | None, sex: str | None) -> None:
    """Sets zone_model/hr_max_formula/sex (CLI names) on a zone request or profile when given."""
    if model:
        msg.zone_model = pb.ZoneModel.Value(ZONE_MODELS[model])
    if formula:
        msg.hr_max_formula = pb.HrMaxFormula.Value(FORMULAS[formula])
    if sex:
        msg.sex = pb.Sex.Value(SEXES[sex])


def zone_request(
    args: argparse.Namespace, readings: Sequence[Reading], now: int
) -> pb.ExerciseZoneRequest:
    """The CalculateExerciseZones request: options, plus columnar readings or a stored range."""
    req = pb.ExerciseZoneRequest(
        user_id=args.user,
        age=args.age,
        max_hr_bpm=args.max_hr,
        resting_bpm=args.resting,
        custom_zone_lower_bpm=args.lows or [],
        session_end_timestamp_ms=args.end or 0,
    )
    set_enum_options(req, args.model or ("custom" if args.lows else None), args.formula, args.sex)
    if args.max_gap is not None:
        req.max_gap_seconds = args.max_gap
    if args.from_ts is not None:
        req.stored_range.from_timestamp_ms = args.from_ts
        req.stored_range.to_timestamp_ms = args.to_ts
    else:
        req.bpm.extend(r.bpm for r in readings)
        req.timestamps_ms.extend(fill_timestamps([r.timestamp_ms for r in readings], now))
    return req


PROFILE_INTS = (
    ("age", "age"),
    ("resting", "resting_bpm"),
    ("max_hr", "max_hr_bpm"),
    ("normal_low", "normal_low_bpm"),
    ("normal_high", "normal_high_bpm"),
)


def profile_from_args(args: argparse.Namespace, base: pb.UserProfile | None) -> pb.UserProfile:
    """The profile to set: `base` (the stored one, or none) with the given options applied."""
    profile = pb.UserProfile()
    if base is not None:
        profile.CopyFrom(base)
    profile.user_id = args.user
    for option, field in PROFILE_INTS:
        if getattr(args, option) is not None:
            setattr(profile, field, getattr(args, option))
    set_enum_options(profile, args.model, args.formula, args.sex)
    if args.lows is not None:
        del profile.custom_zone_lower_bpm[:]
        profile.custom_zone_lower_bpm.extend(args.lows)
    return profile


# --- responses ----------------------------------------------------------------------------


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


def _short_enum(name: str, table: dict[str, str]) -> str:
    """The CLI name of a proto enum name (e.g. 'percent'), else the proto name itself."""
    return next((short for short, full in table.items() if full == name), name)


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


def measurement_ms(m: pb.HeartRateMeasurement) -> int:
    """A stored measurement's time in ms (timestamp_ms wins over timestamp seconds)."""
    return int(m.timestamp_ms or m.timestamp * 1000)


def thresholds_dict(t: pb.Thresholds) -> Json:
    """Thresholds as a JSON-ready dict."""
    return {
        "valid_min_bpm": t.valid_min_bpm,
        "valid_max_bpm": t.valid_max_bpm,
        "normal_low_bpm": t.normal_low_bpm,
        "normal_high_bpm": t.normal_high_bpm,
        "alert_sustain_seconds": t.alert_sustain_seconds,
        "alert_clear_readings": t.alert_clear_readings,
    }


def status_dict(resp: pb.StatusResponse) -> Json:
    """A StatusResponse as a JSON-ready dict."""
    since = resp.alert_since_ms or resp.alert_since * 1000
    return {
        "alert_active": resp.alert_active,
        "alert": alert_name(resp.alert_type) if resp.alert_active else None,
        "alert_since_ms": since or None,
        "thresholds": thresholds_dict(resp.thresholds) if resp.HasField("thresholds") else None,
        "stats": {
            "count": resp.stats.count,
            "average_bpm": resp.stats.average_bpm,
            "min_bpm": resp.stats.min_bpm,
            "max_bpm": resp.stats.max_bpm,
        },
        "recent": [
            {"timestamp_ms": measurement_ms(m), "bpm": m.bpm, "alert": m.triggered_alert}
            for m in resp.recent_measurements
        ],
    }


def _alert_line(resp: pb.StatusResponse) -> str:
    """The alert state as one human line."""
    if not resp.alert_active:
        return "alert: none"
    since = resp.alert_since_ms or resp.alert_since * 1000
    name = alert_name(resp.alert_type) or "NONE"
    return f"alert: {name} since {format_ts_ms(since)}" if since else f"alert: {name}"


def _thresholds_line(t: pb.Thresholds) -> str:
    """Thresholds as one human line."""
    return (
        f"thresholds: valid {t.valid_min_bpm}-{t.valid_max_bpm} bpm, "
        f"normal {t.normal_low_bpm}-{t.normal_high_bpm} bpm, "
        f"alert after {t.alert_sustain_seconds} s, clears after {t.alert_clear_readings} normal"
    )


def status_lines(resp: pb.StatusResponse) -> list[str]:
    """A StatusResponse as human lines: alert, thresholds, stats, recent readings table."""
    lines = [_alert_line(resp)]
    if resp.HasField("thresholds"):
        lines.append(_thresholds_line(resp.thresholds))
    s = resp.stats
    lines.append(
        f"stats: {s.count} readings, average {s.average_bpm:.1f} bpm, "
        f"min {s.min_bpm}, max {s.max_bpm}"
        if s.count or resp.recent_measurements
        else "stats: no readings"
    )
    if resp.recent_measurements:
        lines += ["recent readings (newest first):", f"  {'time':<24}  {'bpm':>4}  alert"]
        for m in resp.recent_measurements:
            flag = "yes" if m.triggered_alert else ""
            lines.append(f"  {format_ts_ms(measurement_ms(m)):<24}  {m.bpm:>4}  {flag}")
    return lines


def zones_dict(resp: pb.ExerciseZoneResponse) -> Json:
    """An ExerciseZoneResponse as a JSON-ready dict (upper_bpm None for the open top zone)."""
    return {
        "hr_max_bpm": resp.hr_max_bpm,
        "zone_model": _short_enum(pb.ZoneModel.Name(resp.zone_model), ZONE_MODELS),
        "reading_count": resp.reading_count,
        "zones": [
            {
                "index": z.index,
                "lower_bpm": z.lower_bpm,
                "upper_bpm": z.upper_bpm or None,
                "seconds": z.seconds,
            }
            for z in resp.zones
        ],
        "below_zones_seconds": resp.below_zones_seconds,
        "legacy_zones_seconds": [resp.zone1_time, resp.zone2_time, resp.zone3_time],
        "total_duration_seconds": resp.total_duration,
        "no_data_seconds": resp.no_data_seconds,
        "average_heart_rate": resp.average_heart_rate,
        "banister_trimp": resp.banister_trimp,
        "edwards_trimp": resp.edwards_trimp,
    }


def _zone_row(label: str, bpm_range: str, seconds: float, total: float) -> str:
    """One row of the zones table."""
    share = f"{100 * seconds / total:5.1f}%" if total > 0 else "    -"
    return f"  {label:<6} {bpm_range:<12} {format_duration(seconds):>8} {seconds:>9.1f} s  {share}"


def zones_lines(resp: pb.ExerciseZoneResponse) -> list[str]:
    """An ExerciseZoneResponse as human lines: per-zone table, legacy zones, totals, TRIMPs."""
    total = float(resp.total_duration)
    model = _short_enum(pb.ZoneModel.Name(resp.zone_model), ZONE_MODELS)
    lines = [f"HRmax {resp.hr_max_bpm} bpm, model {model}, {resp.reading_count} readings"]
    lines.append(f"  {'zone':<6} {'bpm':<12} {'time':>8} {'seconds':>11}  share")
    for z in resp.zones:
        upper = f"-{z.upper_bpm - 1}" if z.upper_bpm else "+"
        lines.append(_zone_row(str(z.index), f"{z.lower_bpm}{upper}", z.seconds, total))
    lines.append(_zone_row("below", "", resp.below_zones_seconds, total))
    lines += [
        f"legacy zones (50-60/60-70/70-90 % HRmax): {resp.zone1_time} s / "
        f"{resp.zone2_time} s / {resp.zone3_time} s",
        f"total {resp.total_duration} s ({format_duration(total)}), "
        f"no data {resp.no_data_seconds:.1f} s, average {resp.average_heart_rate:.1f} bpm",
        f"TRIMP: Banister {resp.banister_trimp:.1f}, Edwards {resp.edwards_trimp:.1f}",
    ]
    return lines


def _batch_result_dict(r: pb.BatchReadingResult, readings: Sequence[Reading]) -> Json:
    """One per-reading batch result as a JSON-ready dict."""
    out: Json = {"index": r.index}
    if 0 <= r.index < len(readings):
        out["bpm"] = readings[r.index].bpm
    out.update(
        result="stored" if r.success else "rejected",
        alert=alert_name(r.alert_type) if r.alert_triggered else None,
        error=r.error or None,
        reject_reason=reject_name(r.reject_reason),
    )
    return out


def batch_dict(resp: pb.HeartRateBatchResponse, readings: Sequence[Reading] = ()) -> Json:
    """A HeartRateBatchResponse as a JSON-ready dict."""
    return {
        "accepted": resp.accepted,
        "rejected": resp.rejected,
        "duplicate": resp.duplicate,
        "alert_active": resp.alert_active,
        "alert": alert_name(resp.alert_type) if resp.alert_active else None,
        "results": [_batch_result_dict(r, readings) for r in resp.results],
    }


def _batch_result_text(r: Json) -> str:
    """One per-reading batch result (as dict) as a human line."""
    head = f"  #{r['index']}" + (f" {r['bpm']} bpm" if "bpm" in r else "")
    if r["result"] == "rejected":
        reason = f" ({r['reject_reason']})" if r["reject_reason"] else ""
        return f"{head}: rejected: {r['error'] or 'no reason given'}{reason}"
    return f"{head}: stored" + (f" ALERT {r['alert']}" if r["alert"] else "")


def batch_lines(resp: pb.HeartRateBatchResponse, readings: Sequence[Reading] = ()) -> list[str]:
    """A HeartRateBatchResponse as human lines: counts, alert state, per-reading results."""
    d = batch_dict(resp, readings)
    alert = f"alert {d['alert']} active" if d["alert_active"] else "no alert active"
    head = f"accepted {d['accepted']}, rejected {d['rejected']}, duplicate {d['duplicate']}"
    return [f"{head}; {alert}"] + [_batch_result_text(r) for r in d["results"]]


def profile_dict(p: pb.UserProfile) -> Json:
    """A UserProfile as a JSON-ready dict with CLI enum names (None when unspecified)."""
    return {
        "user_id": p.user_id,
        "age": p.age,
        "sex": _short_enum(pb.Sex.Name(p.sex), SEXES) if p.sex else None,
        "resting_bpm": p.resting_bpm,
        "max_hr_bpm": p.max_hr_bpm,
        "zone_model": _short_enum(pb.ZoneModel.Name(p.zone_model), ZONE_MODELS)
        if p.zone_model
        else None,
        "hr_max_formula": _short_enum(pb.HrMaxFormula.Name(p.hr_max_formula), FORMULAS)
        if p.hr_max_formula
        else None,
        "normal_low_bpm": p.normal_low_bpm,
        "normal_high_bpm": p.normal_high_bpm,
        "custom_zone_lower_bpm": list(p.custom_zone_lower_bpm),
    }


def profile_lines(p: pb.UserProfile) -> list[str]:
    """A UserProfile as 'key: value' lines; unset values shown as 'default'."""
    lines = []
    for key, value in profile_dict(p).items():
        if isinstance(value, list):
            value = ",".join(map(str, value))
        shown = "default" if value in (None, 0, "") and key != "user_id" else value
        lines.append(f"{key}: {shown if shown != '' else 'default user'}")
    return lines


# --- errors -------------------------------------------------------------------------------


def rpc_error_report(code_name: str, details: str, address: str) -> tuple[int, str]:
    """(exit code, stderr message) for a failed RPC; an unreachable server gets exit 3."""
    lowered = details.lower()
    if code_name == "UNAVAILABLE" and any(m in lowered for m in UNREACHABLE_MARKERS):
        return EXIT_UNREACHABLE, f"error: cannot reach {address} (is the service running?)"
    return EXIT_RPC, f"error: {code_name}: {details}"


def describe_rpc_error(exc: grpc.RpcError) -> tuple[str, str]:
    """(status code name, details) of an RpcError raised by a sync or aio call."""
    code = exc.code() if callable(getattr(exc, "code", None)) else None
    details = exc.details() if callable(getattr(exc, "details", None)) else None
    return (code.name if code is not None else "UNKNOWN"), str(details or exc)


# --- argument parsing ---------------------------------------------------------------------


def _int_at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer >= low."""

    def convert(text: str) -> int:
        """The integer, or an argparse error."""
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    convert.__name__ = f"integer >= {low}"
    return convert


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def time_arg(text: str) -> int:
    """An argparse type: a time (Unix s, Unix ms or ISO 8601) as Unix ms."""
    try:
        return parse_time_ms(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def lows_arg(text: str) -> list[int]:
    """An argparse type: comma-separated, strictly ascending, positive zone lower bounds."""
    try:
        lows = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not lows or lows[0] <= 0 or any(b <= a for a, b in zip(lows, lows[1:], strict=False)):
        raise argparse.ArgumentTypeError(f"must be positive and strictly ascending: {text!r}")
    return lows


def _global_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """--address/--user/--json/--timeout; on subcommands with suppressed defaults."""

    def default(value: object) -> object:
        """The default, or SUPPRESS so a subcommand does not override the global value."""
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "--address",
        default=default(None),
        help="host:port of the service (default 127.0.0.1:GRPC_PORT from the settings, 50051)",
    )
    parser.add_argument("--user", default=default(""), help="user_id (default: the default user)")
    parser.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="machine output: one JSON object per result line",
    )
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=default(10.0),
        help="per-call deadline in seconds (default 10)",
    )


def _add_submit(sub: Any) -> None:
    """The `submit` subcommand."""
    p = sub.add_parser("submit", help="submit one reading (SubmitHeartRate)")
    p.add_argument("bpm", type=parse_bpm, metavar="BPM")
    when = p.add_mutually_exclusive_group()
    when.add_argument(
        "--timestamp",
        type=time_arg,
        metavar="S",
        help="Unix seconds (or ISO 8601); default: the server's now",
    )
    when.add_argument("--timestamp-ms", type=_int_at_least(0), metavar="MS", help="Unix ms")
    p.set_defaults(handler=cmd_submit)
    _global_options(p, suppress=True)


def _add_file_arg(p: argparse.ArgumentParser) -> None:
    """The optional FILE argument ('-' or absent: stdin)."""
    p.add_argument(
        "file",
        nargs="?",
        default="-",
        metavar="FILE",
        help="lines 'bpm', 'timestamp,bpm' or JSON objects; '-' or absent: stdin",
    )


def _add_stream_status_batch(sub: Any) -> None:
    """The `stream`, `status` and `batch` subcommands."""
    p = sub.add_parser("stream", help="stream readings over one bidi stream (StreamHeartRate)")
    _add_file_arg(p)
    p.set_defaults(handler=cmd_stream)
    _global_options(p, suppress=True)
    p = sub.add_parser("status", help="alert state, thresholds, stats, recent readings")
    p.add_argument(
        "--recent",
        type=_int_at_least(0),
        default=10,
        metavar="N",
        help="how many recent readings (default 10, 0: the server's default)",
    )
    p.set_defaults(handler=cmd_status)
    _global_options(p, suppress=True)
    p = sub.add_parser("batch", help="submit readings as one columnar batch")
    _add_file_arg(p)
    p.set_defaults(handler=cmd_batch)
    _global_options(p, suppress=True)


def _physiology_options(p: argparse.ArgumentParser) -> None:
    """Options shared by `zones` and `profile set`."""
    p.add_argument("--model", choices=sorted(ZONE_MODELS), help="zone model")
    p.add_argument("--formula", choices=list(FORMULAS), help="HRmax formula")
    p.add_argument("--max-hr", type=_int_at_least(0), metavar="BPM", help="measured HRmax")
    p.add_argument("--resting", type=_int_at_least(0), metavar="BPM", help="resting heart rate")
    p.add_argument(
        "--lows",
        type=lows_arg,
        metavar="B1,B2,..",
        help="custom zone lower bounds, bpm, ascending (implies --model custom)",
    )
    p.add_argument("--sex", choices=list(SEXES), help="for the Banister TRIMP coefficients")


def _add_zones(sub: Any) -> None:
    """The `zones` subcommand."""
    p = sub.add_parser("zones", help="time in heart-rate zones (CalculateExerciseZones)")
    p.add_argument(
        "--age",
        type=_int_at_least(0),
        default=0,
        metavar="N",
        help="years (optional when --max-hr or the profile gives it)",
    )
    _physiology_options(p)
    p.add_argument(
        "--max-gap",
        type=_int_at_least(0),
        metavar="S",
        help="longer gaps count as no data (server default 30)",
    )
    p.add_argument(
        "--end", type=time_arg, metavar="TS", help="session end: the last reading counts until then"
    )
    p.add_argument(
        "--from",
        dest="from_ts",
        type=time_arg,
        metavar="TS",
        help="use stored readings from this time (with --to)",
    )
    p.add_argument("--to", dest="to_ts", type=time_arg, metavar="TS", help="... up to this time")
    _add_file_arg(p)
    p.set_defaults(handler=cmd_zones, resting=0, max_hr=0)
    _global_options(p, suppress=True)


def _add_profile(sub: Any) -> None:
    """The `profile get` and `profile set` subcommands."""
    p = sub.add_parser("profile", help="read or set the user's profile")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    get = actions.add_parser("get", help="show the profile (GetUserProfile)")
    get.set_defaults(handler=cmd_profile_get)
    _global_options(get, suppress=True)
    put = actions.add_parser("set", help="update the profile (SetUserProfile)")
    put.add_argument("--age", type=_int_at_least(0), metavar="N", help="years")
    _physiology_options(put)
    put.add_argument("--normal-low", type=_int_at_least(0), metavar="BPM", help="alert below")
    put.add_argument("--normal-high", type=_int_at_least(0), metavar="BPM", help="alert above")
    put.add_argument(
        "--replace",
        action="store_true",
        help="replace the whole profile instead of updating the stored one",
    )
    put.set_defaults(handler=cmd_profile_set)
    _global_options(put, suppress=True)
    _global_options(p, suppress=True)


def _add_simulate(sub: Any) -> None:
    """The `simulate` subcommand."""
    p = sub.add_parser("simulate", help="stream synthetic workouts for many users in real time")
    p.add_argument("--users", type=_int_at_least(1), required=True, metavar="N")
    p.add_argument(
        "--rate",
        type=positive_float,
        required=True,
        metavar="HZ",
        help="readings per second per user",
    )
    p.add_argument("--duration", type=positive_float, required=True, metavar="S", help="seconds")
    p.add_argument("--user-prefix", default="sim-", help="user ids are PREFIX1..PREFIXN")
    p.add_argument("--seed", type=int, default=0, help="user i uses workout seed SEED+i")
    p.set_defaults(async_handler=run_simulate)
    _global_options(p, suppress=True)


def build_parser() -> argparse.ArgumentParser:
    """The whole `heartrate` argument parser."""
    parser = argparse.ArgumentParser(
        prog="heartrate", description="Command-line client of the heartrate-serve gRPC service."
    )
    _global_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_submit(sub)
    _add_stream_status_batch(sub)
    _add_zones(sub)
    _add_profile(sub)
    _add_simulate(sub)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parsed and cross-checked arguments (exits with usage on error, like argparse)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "zones":
        if (args.from_ts is None) != (args.to_ts is None):
            parser.error("zones: --from and --to go together")
        if args.from_ts is not None and args.file != "-":
            parser.error("zones: give either FILE or --from/--to, not both")
    return args


# --- I/O and commands ---------------------------------------------------------------------


def default_address(settings: Settings | None = None) -> str:
    """127.0.0.1 on the gRPC port of the settings (built from the environment by Settings)."""
    port = (settings or Settings.from_env()).grpc_port
    return f"127.0.0.1:{port}"


def open_input(path: str) -> TextIO:
    """The input file, or stdin for '-'; undecodable bytes become malformed lines, not crashes."""
    try:
        if path == "-":
            return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
        return open(path, encoding="utf-8", errors="replace")  # noqa: SIM115
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None


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


def read_readings(path: str) -> list[Reading]:
    """All readings of a file or stdin; bad lines reported on stderr and skipped."""
    readings: list[Reading] = []
    with open_input(path) as lines:
        for item in parse_lines(lines):
            if isinstance(item, BadLine):
                warn(item.message())
            else:
                readings.append(item)
    if not readings:
        raise InputError(f"no readings in {'stdin' if path == '-' else path}")
    return readings


def cmd_submit(args: argparse.Namespace, stub: Any) -> int:
    """`submit`: one SubmitHeartRate call."""
    req = submit_request(args)
    resp: pb.HeartRateResponse = stub.SubmitHeartRate(req, timeout=args.timeout)
    reading = Reading(req.bpm, req.timestamp_ms)
    emit(args.json, response_dict(resp, reading), [response_text(resp)])
    return EXIT_OK


def stream_requests(
    items: Iterable[Reading | BadLine], user_id: str, pending: deque[Reading], tally: Tally
) -> Iterator[pb.HeartRateRequest]:
    """Requests for the readings (remembered in `pending`); bad lines reported and skipped."""
    for item in items:
        if isinstance(item, BadLine):
            tally.malformed += 1
            warn(item.message())
            continue
        pending.append(item)
        tally.sent += 1
        yield reading_request(item, user_id)


def cmd_stream(args: argparse.Namespace, stub: Any) -> int:
    """`stream`: one StreamHeartRate call for the whole input; no deadline (input may be live)."""
    tally, pending = Tally(), deque[Reading]()
    with open_input(args.file) as lines:
        requests = stream_requests(parse_lines(lines), args.user, pending, tally)
        for resp in stub.StreamHeartRate(requests):
            reading = pending.popleft() if pending else None
            tally.add(resp)
            emit(args.json, response_dict(resp, reading), [response_text(resp, reading)])
    emit(args.json, {"summary": asdict(tally)}, [f"summary: {tally.text()}"])
    return EXIT_OK


def cmd_status(args: argparse.Namespace, stub: Any) -> int:
    """`status`: one GetHeartRateStatus call."""
    resp: pb.StatusResponse = stub.GetHeartRateStatus(status_request(args), timeout=args.timeout)
    emit(args.json, status_dict(resp), status_lines(resp))
    return EXIT_OK


def cmd_zones(args: argparse.Namespace, stub: Any) -> int:
    """`zones`: one CalculateExerciseZones call over the input or a stored range."""
    readings = read_readings(args.file) if args.from_ts is None else []
    req = zone_request(args, readings, now_ms())
    resp: pb.ExerciseZoneResponse = stub.CalculateExerciseZones(req, timeout=args.timeout)
    emit(args.json, zones_dict(resp), zones_lines(resp))
    return EXIT_OK


def cmd_batch(args: argparse.Namespace, stub: Any) -> int:
    """`batch`: one SubmitHeartRateBatch call for the whole input."""
    readings = read_readings(args.file)
    req = batch_request(readings, args.user, now_ms())
    resp: pb.HeartRateBatchResponse = stub.SubmitHeartRateBatch(req, timeout=args.timeout)
    emit(args.json, batch_dict(resp, readings), batch_lines(resp, readings))
    return EXIT_OK


def cmd_profile_get(args: argparse.Namespace, stub: Any) -> int:
    """`profile get`: one GetUserProfile call (NOT_FOUND when none was set)."""
    req = pb.GetUserProfileRequest(user_id=args.user)
    resp: pb.GetUserProfileResponse = stub.GetUserProfile(req, timeout=args.timeout)
    emit(args.json, profile_dict(resp.profile), profile_lines(resp.profile))
    return EXIT_OK


def _stored_profile(args: argparse.Namespace, stub: Any) -> pb.UserProfile | None:
    """The user's stored profile, None when none is set or --replace was given."""
    if args.replace:
        return None
    try:
        req = pb.GetUserProfileRequest(user_id=args.user)
        resp: pb.GetUserProfileResponse = stub.GetUserProfile(req, timeout=args.timeout)
    except grpc.RpcError as exc:
        if describe_rpc_error(exc)[0] == "NOT_FOUND":
            return None
        raise
    return resp.profile


def cmd_profile_set(args: argparse.Namespace, stub: Any) -> int:
    """`profile set`: updates the stored profile with the given options (SetUserProfile)."""
    profile = profile_from_args(args, _stored_profile(args, stub))
    req = pb.SetUserProfileRequest(profile=profile)
    resp: pb.SetUserProfileResponse = stub.SetUserProfile(req, timeout=args.timeout)
    emit(args.json, profile_dict(resp.profile), profile_lines(resp.profile))
    return EXIT_OK


# --- simulate -----------------------------------------------------------------------------


def sim_user_ids(prefix: str, users: int) -> list[str]:
    """The simulated user ids: PREFIX1..PREFIXN."""
    return [f"{prefix}{i}" for i in range(1, users + 1)]


def sim_request(
    user_id: str, bpm: int, i: int, rate_hz: float, start_ms: int
) -> pb.HeartRateRequest:
    """Reading i of a simulated user, 1/rate s after the previous: ms when rate > 1, else s."""
    if rate_hz > 1:
        ts_ms = start_ms + round(i * 1000 / rate_hz)
        return pb.HeartRateRequest(bpm=bpm, timestamp_ms=ts_ms, user_id=user_id)
    return pb.HeartRateRequest(
        bpm=bpm, timestamp=start_ms // 1000 + round(i / rate_hz), user_id=user_id
    )


def progress_line(tally: Tally, elapsed_s: float) -> str:
    """The simulator's progress line."""
    return (
        f"sent {tally.sent}  acked {tally.acked}  rejected {tally.rejected}  "
        f"alerts {tally.alerts}  elapsed {elapsed_s:.1f}s"
    )


def sim_summary(
    tally: Tally, users: int, rate_hz: float, duration_s: float, elapsed_s: float
) -> Json:
    """The simulator's final summary as a JSON-ready dict."""
    return {
        "users": users,
        "rate_hz": rate_hz,
        "duration_s": duration_s,
        **{k: v for k, v in asdict(tally).items() if k != "malformed"},
        "elapsed_s": round(elapsed_s, 3),
        "acked_per_s": round(tally.acked / elapsed_s, 1) if elapsed_s > 0 else 0.0,
    }


async def paced_requests(
    user_id: str, bpms: NDArray[np.int32], rate_hz: float, t0: float, tally: Tally
) -> AsyncIterator[pb.HeartRateRequest]:
    """The user's readings, reading i sent at t0 + i/rate on the monotonic clock."""
    start_ms = now_ms()
    for i, bpm in enumerate(bpms.tolist()):
        delay = t0 + i / rate_hz - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tally.sent += 1
        yield sim_request(user_id, bpm, i, rate_hz, start_ms)


async def simulate_user(
    stub: Any, user_id: str, seed: int, args: argparse.Namespace, tally: Tally, t0: float
) -> None:
    """One simulated user: one bidi stream carrying a whole synthetic workout."""
    bpms = workout_bpm(args.duration, args.rate, seed)
    requests = paced_requests(user_id, bpms, args.rate, t0, tally)
    call = stub.StreamHeartRate(requests, timeout=args.duration + args.timeout)
    async for resp in call:
        tally.add(resp)


async def report_progress(tally: Tally, t0: float, out: TextIO) -> None:
    """Refreshes the progress line on `out` about once per second until cancelled."""
    end = "\r" if out.isatty() else "\n"
    try:
        while True:
            await asyncio.sleep(1.0)
            out.write(progress_line(tally, time.monotonic() - t0) + end)
            out.flush()
    finally:
        if end == "\r":
            out.write("\n")


async def _run_users(stub: Any, args: argparse.Namespace, tally: Tally, t0: float) -> None:
    """All users' streams concurrently; the first failure cancels the others and is raised."""
    users = sim_user_ids(args.user_prefix, args.users)
    tasks = [
        asyncio.create_task(simulate_user(stub, u, args.seed + i, args, tally, t0))
        for i, u in enumerate(users)
    ]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def run_simulate(args: argparse.Namespace) -> int:
    """`simulate`: N concurrent real-time streams (grpc.aio), progress on stderr, a summary."""
    tally, t0 = Tally(), time.monotonic()
    async with grpc.aio.insecure_channel(args.address) as channel:
        stub = pb_grpc.HeartRateMonitorStub(channel)  # type: ignore[no-untyped-call]
        progress = asyncio.create_task(report_progress(tally, t0, sys.stderr))
        try:
            await _run_users(stub, args, tally, t0)
        finally:
            progress.cancel()
            await asyncio.gather(progress, return_exceptions=True)
    summary = sim_summary(tally, args.users, args.rate, args.duration, time.monotonic() - t0)
    emit(args.json, summary, ["summary: " + ", ".join(f"{k} {v}" for k, v in summary.items())])
    return EXIT_OK


# --- entry point --------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    """Runs the chosen command against args.address."""
    if hasattr(args, "async_handler"):
        code: int = asyncio.run(args.async_handler(args))
        return code
    with grpc.insecure_channel(args.address) as channel:
        code = args.handler(args, pb_grpc.HeartRateMonitorStub(channel))  # type: ignore[no-untyped-call]
        return code


def main(argv: Sequence[str] | None = None) -> int:
    """The `heartrate` console script; returns the exit code."""
    args = parse_args(argv)
    try:
        args.address = args.address or default_address()
        return run(args)
    except grpc.RpcError as exc:
        code, message = rpc_error_report(*describe_rpc_error(exc), args.address)
        warn(message)
        return code
    except (InputError, SettingsError) as exc:
        warn(f"error: {exc}")
        return EXIT_INPUT
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: stop quietly, as other Unix tools do.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
