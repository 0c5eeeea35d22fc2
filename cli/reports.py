"""The `heartrate` client's reports: status, zones, batch and profile answers as text or JSON."""

from __future__ import annotations

from collections.abc import Sequence

from heartrate_serve.cli.inputs import Reading
from heartrate_serve.cli.output import (
    Json,
    alert_name,
    format_duration,
    format_ts_ms,
    reject_name,
)
from heartrate_serve.cli.requests import FORMULAS, SEXES, ZONE_MODELS
from heartrate_serve.proto import heartrate_service_pb2 as pb


def _short_enum(name: str, table: dict[str, str]) -> str:
    """The CLI name of a proto enum name (e.g. 'percent'), else the proto name itself."""
    return next((short for short, full in table.items() if full == name), name)


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
        "webhook_url": p.webhook_url or None,
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
