"""The `heartrate simulate` pure parts: user ids, requests, progress and summary."""

from __future__ import annotations

import json

from heartrate_serve.cli import simulator as cli_simulator
from heartrate_serve.cli.output import Tally

T0_S = 1_700_000_000
T0_MS = T0_S * 1000


def test_sim_requests_and_ids() -> None:
    """Simulated readings advance 1/rate s from the start: ms above 1 Hz, else seconds."""
    assert cli_simulator.sim_user_ids("sim-", 3) == ["sim-1", "sim-2", "sim-3"]
    fast = cli_simulator.sim_request("sim-1", 120, 3, 4.0, T0_MS)
    assert (fast.timestamp_ms, fast.timestamp, fast.user_id, fast.bpm) == (
        T0_MS + 750, 0, "sim-1", 120,
    )  # fmt: skip
    slow = cli_simulator.sim_request("sim-2", 90, 3, 0.5, T0_MS + 400)
    assert (slow.timestamp, slow.timestamp_ms) == (T0_S + 6, 0)


def test_progress_and_summary() -> None:
    """The progress line and final summary carry sent, acked, rejected, alerts and time."""
    tally = Tally(sent=10, acked=8, accepted=7, rejected=1, alerts=2)
    assert cli_simulator.progress_line(tally, 3.04) == (
        "sent 10  acked 8  rejected 1  alerts 2  elapsed 3.0s"
    )
    s = cli_simulator.sim_summary(tally, users=2, rate_hz=1.0, duration_s=4.0, elapsed_s=4.0)
    assert (s["users"], s["sent"], s["acked"], s["acked_per_s"], s["alerts"]) == (2, 10, 8, 2.0, 2)
    assert "malformed" not in s
    json.dumps(s)
