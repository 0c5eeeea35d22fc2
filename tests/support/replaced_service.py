"""The replaced service's observable behaviours, as a table over its contract (the v1 proto in
this folder): what an old client sends and what it must see, texts included. Run against the
real service by tests/e2e/test_old_clients.py through tests/support/old_client.py (v1 stubs, in a
process of their own).

Each case: a name, the RPC, the v1 request (as JSON for json_format; "NOW-5" in a timestamp
means five seconds before the client's clock) and what must be seen: response fields that must
equal (`equal`), or the status code and exact details of an error (`code`, `details`). Zone
figures are left out on purpose: this service computes time in zones by sample-and-hold over
every interval, where the replaced one averaged at most 3 pairs (README, "Differences").
"""

from __future__ import annotations

from typing import Any

OUT_OF_RANGE = "Heart rate out of typical range for an adult"
MS = [{"bpm": b, "timestamp": 1_700_000_000 + 10 * i} for i, b in enumerate([100, 110, 126, 150])]

CASES: list[dict[str, Any]] = [
    {
        "name": "in-range reading is stored",
        "rpc": "SubmitHeartRate",
        "request": {"bpm": 72, "timestamp": "NOW-5"},
        "equal": {"success": True, "error": "", "alert_triggered": False, "alert_type": "NONE"},
    },
    {
        "name": "over 180 bpm: the replaced service's error text",
        "rpc": "SubmitHeartRate",
        "request": {"bpm": 250, "timestamp": "NOW-5"},
        "equal": {"success": False, "error": OUT_OF_RANGE},
    },
    {
        "name": "under 40 bpm: the same text",
        "rpc": "SubmitHeartRate",
        "request": {"bpm": 20},
        "equal": {"success": False, "error": OUT_OF_RANGE},
    },
    {
        "name": "high reading raises the per-reading alert",
        "rpc": "SubmitHeartRate",
        "request": {"bpm": 160, "timestamp": "NOW-4"},
        "equal": {"success": True, "error": "", "alert_triggered": True},
        "alert": "HIGH_HEART_RATE",
    },
    {
        "name": "low reading raises the per-reading alert",
        "rpc": "SubmitHeartRate",
        "request": {"bpm": 45, "timestamp": "NOW-3"},
        "equal": {"success": True, "alert_triggered": True},
        "alert": "LOW_HEART_RATE",
    },
    {
        "name": "stream: one answer per reading, the out-of-range one with the same text",
        "rpc": "StreamHeartRate",
        "request": [{"bpm": 70}, {"bpm": 20}, {"bpm": 45}],
        "stream": [
            {"success": True, "error": ""},
            {"success": False, "error": OUT_OF_RANGE},
            {"success": True, "alert_triggered": True},
        ],
    },
    {
        "name": "status answers the newest readings, at most recent_count",
        "rpc": "GetHeartRateStatus",
        "request": {"recent_count": 3},
        "count": 3,
    },
    {
        "name": "zones over measurements answer",
        "rpc": "CalculateExerciseZones",
        "request": {"age": 40, "measurements": MS},
        "code": "OK",
    },
    {
        "name": "zones with age 0: INVALID_ARGUMENT, the replaced service's text",
        "rpc": "CalculateExerciseZones",
        "request": {"age": 0, "measurements": MS},
        "code": "INVALID_ARGUMENT",
        "details": "Age must be a positive integer",
    },
    {
        "name": "zones with a negative age: the same",
        "rpc": "CalculateExerciseZones",
        "request": {"age": -3, "measurements": MS},
        "code": "INVALID_ARGUMENT",
        "details": "Age must be a positive integer",
    },
    {
        "name": "zones without measurements: INVALID_ARGUMENT, the replaced service's text",
        "rpc": "CalculateExerciseZones",
        "request": {"age": 40},
        "code": "INVALID_ARGUMENT",
        "details": "No measurements provided",
    },
]
