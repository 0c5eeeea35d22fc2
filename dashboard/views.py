"""The JSON bodies of the dashboard's endpoints, from the service core's results.

Alert types and zone models go out by name (as in the protobuf enums); times are Unix ms.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.service.dashboard_reads import UserView, Zones
from heartrate_serve.store.alert_board import ActiveAlert, Newest

ALERT_TYPES = {0: "NONE", 1: "LOW_HEART_RATE", 2: "HIGH_HEART_RATE"}


def alert_type_name(value: int) -> str:
    """The AlertType enum name of a value ("NONE" for anything unknown)."""
    return ALERT_TYPES.get(int(value), "NONE")


def alerts_body(
    now_ms: int,
    rows: Sequence[ActiveAlert],
    newest: dict[str, Newest],
    total: int,
) -> dict[str, Any]:
    """GET /api/alerts: the active alerts shown (newest first) and how many there are."""
    alerts = []
    for row in rows:
        latest = newest.get(row.user_id)
        alerts.append(
            {
                "user_id": row.user_id,
                "alert_type": alert_type_name(row.alert_type),
                "since_ms": row.since_ms,
                "bpm": None if latest is None else latest.bpm,
                "bpm_at_ms": None if latest is None else latest.ts_ms,
            }
        )
    return {"now_ms": now_ms, "total": total, "shown": len(alerts), "alerts": alerts}


def zones_body(zones: Zones) -> dict[str, Any]:
    """Today's time in zones (or why there are none)."""
    body: dict[str, Any] = {
        "day_start_ms": zones.day_start_ms,
        "computed_at_ms": zones.computed_at_ms,
        "note": zones.note,
    }
    z = zones.response
    if z is None:
        return {**body, "available": False}
    try:
        model = pb.ZoneModel.Name(z.zone_model)
    except ValueError:
        model = ""
    return {
        **body,
        "available": True,
        "model": model.removeprefix("ZONE_MODEL_"),
        "hr_max_bpm": z.hr_max_bpm,
        "zones": [
            {
                "index": zone.index,
                "lower_bpm": zone.lower_bpm,
                "upper_bpm": zone.upper_bpm,
                "seconds": round(zone.seconds, 1),
            }
            for zone in z.zones
        ],
        "below_zones_seconds": round(z.below_zones_seconds, 1),
        "no_data_seconds": round(z.no_data_seconds, 1),
        "total_seconds": z.total_duration,
        "average_bpm": round(z.average_heart_rate, 1),
        "reading_count": z.reading_count,
        "banister_trimp": round(z.banister_trimp, 1),
        "edwards_trimp": round(z.edwards_trimp, 1),
    }


def user_body(view: UserView) -> dict[str, Any]:
    """GET /api/users/<user_id>: alert state, thresholds, newest reading, the readings from
    `from_ms` on (ascending) and today's zones."""
    status = view.status
    t = status.thresholds
    newest = status.recent_measurements[0] if status.recent_measurements else None
    return {
        "user_id": view.user_id,
        "now_ms": view.now_ms,
        "alert": {
            "active": status.alert_active,
            "alert_type": alert_type_name(status.alert_type),
            "since_ms": status.alert_since_ms if status.alert_active else None,
        },
        "thresholds": {
            "valid_min_bpm": t.valid_min_bpm,
            "valid_max_bpm": t.valid_max_bpm,
            "normal_low_bpm": t.normal_low_bpm,
            "normal_high_bpm": t.normal_high_bpm,
            "alert_sustain_seconds": t.alert_sustain_seconds,
            "alert_clear_readings": t.alert_clear_readings,
        },
        "latest": None if newest is None else {"ts_ms": newest.timestamp_ms, "bpm": newest.bpm},
        "readings": {
            "from_ms": view.from_ms,
            "ts_ms": view.readings.ts_ms.tolist(),
            "bpm": view.readings.bpm.tolist(),
        },
        "zones": zones_body(view.zones),
    }
