"""Pure helpers of the load tests and the benchmark (no servers, no load)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from heartrate_serve.loadtest import bench_report, bench_runs, loadgen, run_locust
from heartrate_serve.loadtest.common import (
    ScenarioSpec,
    fmt_num,
    markdown_table,
    parse_scenario,
    parse_scenarios,
    percentile,
    ratio,
    summarize_latencies,
)
from heartrate_serve.loadtest.service import TreeSample, cpu_used


@pytest.mark.parametrize("q", [0, 1, 25, 50, 90, 99, 100])
def test_percentile_matches_numpy(q: float) -> None:
    """percentile() interpolates linearly like numpy's default."""
    data = [float(x) for x in np.random.default_rng(1).exponential(10, 101)]
    assert percentile(data, q) == pytest.approx(float(np.percentile(data, q)))


def test_percentile_edge_cases() -> None:
    """One value is every percentile; no values is NaN; q outside 0-100 fails."""
    assert percentile([3.0], 99) == 3.0
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summarize_latencies() -> None:
    """Count, p50, p99, max and mean of a known sample; NaNs when empty."""
    s = summarize_latencies(float(x) for x in range(1, 101))
    assert (s.count, s.max_ms, s.mean_ms) == (100, 100.0, 50.5)
    assert s.p50_ms == pytest.approx(50.5)
    assert s.p99_ms == pytest.approx(99.01)
    assert summarize_latencies([]).count == 0 and math.isnan(summarize_latencies([]).p99_ms)


def test_parse_scenario() -> None:
    """kind:concurrency parses; the kind alone takes its default concurrency."""
    assert parse_scenario("unary:16") == ScenarioSpec("unary", 16)
    assert parse_scenario(" streams1hz ") == ScenarioSpec("streams1hz", 2000)
    assert parse_scenario("batch:4").unit == "readings/s"
    assert parse_scenario("zones-stored:2").name == "zones-stored:2"


@pytest.mark.parametrize("bad", ["nope:1", "unary:x", "unary:0", "unary:-3", ""])
def test_parse_scenario_rejects(bad: str) -> None:
    """Unknown kinds and bad counts fail with ValueError."""
    with pytest.raises(ValueError):
        parse_scenario(bad)


def test_parse_scenarios_and_bench_plans() -> None:
    """A comma list parses in order; both bench plans parse and cover every target's scenario."""
    assert [s.name for s in parse_scenarios("unary:1, stream:64,")] == ["unary:1", "stream:64"]
    for quick in (True, False):
        names = {s.name for s in bench_runs.plan_for(quick).scenarios}
        assert {"unary:16", "stream:16", "batch:4"} <= names
        assert any(n.startswith("streams1hz:") for n in names)
    assert bench_runs.plan_for(False).many_streams_duration_s == 30


def test_markdown_table() -> None:
    """Columns are padded; the first is left-aligned, the others right-aligned."""
    out = markdown_table(["name", "value"], [["a", "1"], ["long name", "1,000"]])
    lines = out.splitlines()
    assert lines[0] == "| name      | value |"
    assert lines[1] == "|:----------|------:|"
    assert lines[3] == "| long name | 1,000 |"
    with pytest.raises(ValueError):
        markdown_table(["a", "b"], [["only one"]])


def test_ratio_and_numbers() -> None:
    """ratio() is NaN for a zero or NaN baseline; fmt_num shows NaN as '-'."""
    assert ratio(3.0, 2.0) == 1.5
    assert math.isnan(ratio(1.0, 0.0)) and math.isnan(ratio(math.nan, 1.0))
    assert fmt_num(1234.4) == "1,234"
    assert fmt_num(0.456, 2) == "0.46"
    assert fmt_num(math.nan) == "-"


def test_channels_for() -> None:
    """One channel per 100 streams, at least one."""
    assert [loadgen.channels_for(n) for n in (1, 100, 101, 2000)] == [1, 1, 2, 20]


def test_recorder_counts_only_the_window() -> None:
    """Operations ending outside the measured window count neither latency nor units; errors
    always count."""
    rec = loadgen.Recorder(10.0, 20.0)
    rec.ok(9.0, 9.5)  # warm-up
    rec.ok(10.0, 10.25, units=1000)
    rec.ok(19.0, 21.0)  # ends after the window
    rec.error("boom")
    assert (rec.ops, rec.units, rec.errors) == (1, 1000, 1)
    assert rec.latencies_ms == [250.0]


def test_cpu_used_counts_new_processes_from_zero() -> None:
    """CPU of a tree between samples: deltas of known pids, full time of new ones."""
    before = TreeSample({1: 10.0, 2: 5.0}, 0, 0, 2)
    after = TreeSample({1: 12.5, 3: 1.0}, 0, 0, 2)
    assert cpu_used(before, after) == pytest.approx(3.5)


def test_targets_verdicts() -> None:
    """The bench's target checks: ratios against the baseline, streams, memory, start time."""
    spec = parse_scenarios("unary:16,stream:16,streams1hz:2000,batch:4")

    def res(tp: float, **extra: object) -> dict[str, object]:
        return {"throughput": tp, "latency_ms": {"p99_ms": 20.0}, "errors": 0, **extra}

    base = {"results": {"unary:16": res(1000), "stream:16": res(2000), "batch:4": res(1e5)}}
    svc = {
        "results": {
            "unary:16": res(700),
            "stream:16": res(1500),
            "streams1hz:2000": res(2000, lost=0),
            "batch:4": res(50_000),
        },
        "idle": {"rss_bytes": 2 * bench_report.GIB, "pss_bytes": bench_report.GIB},
        "start_to_serving_s": 15.0,
    }
    verdicts = [c["ok"] for c in bench_report.targets(base, svc, spec)]
    assert verdicts == [True, True, True, True, False, True, True, False, True]
    svc["results"]["stream:16"] = res(1300)  # 0.65 of the baseline: below issue 9's 0.66
    assert [c["ok"] for c in bench_report.targets(base, svc, spec)][1] is False


def test_median_run_of_repeated_scenarios() -> None:
    """The run of median throughput counts; all runs are listed; errors add up; a failed run
    ranks lowest; one run is returned as it is."""
    runs = [
        {"throughput": 700.0, "errors": 0, "p": "a"},
        {"throughput": 900.0, "errors": 1, "p": "b"},
        {"throughput": 800.0, "errors": 0, "p": "c"},
    ]
    got = bench_report.median_run(runs)
    assert (got["p"], got["runs"], got["errors"]) == ("c", [700.0, 900.0, 800.0], 1)
    failed = {"failed": True, "errors": math.nan}
    assert bench_report.median_run([runs[1], failed, runs[0]])["p"] == "a"
    assert bench_report.median_run([runs[0]]) == runs[0]
    assert bench_runs.plan_for(False).repeats == 3 and bench_runs.plan_for(True).repeats == 1


def test_bracket_baseline_averages_before_and_after() -> None:
    """A ratio scenario measured before and after the service counts as the mean of both;
    others stay as they were; a failed pass leaves the first one alone."""
    before = {
        "stream:16": {"throughput": 1000.0, "errors": 0, "latency_ms": {"p50_ms": 9.0}},
        "batch:4": {"throughput": 5.0, "errors": 0},
        "unary:16": {"throughput": 600.0, "errors": 0},
    }
    after = {
        "stream:16": {"throughput": 800.0, "errors": 1},
        "unary:16": {"failed": True, "errors": math.nan},
    }
    got = bench_report.bracket_baseline(before, after)
    assert got["stream:16"]["throughput"] == 900.0
    assert got["stream:16"]["passes"] == [1000.0, 800.0]
    assert got["stream:16"]["errors"] == 1
    assert got["stream:16"]["latency_ms"] == {"p50_ms": 9.0}
    assert got["batch:4"] == before["batch:4"] and got["unary:16"] == before["unary:16"]


def test_failures_in_csv(tmp_path: Path) -> None:
    """The Aggregated row of locust's stats CSV gives requests and failures."""
    path = tmp_path / "x_stats.csv"
    path.write_text(
        "Type,Name,Request Count,Failure Count\ngrpc,SubmitHeartRate,10,1\n,Aggregated,12,1\n"
    )
    assert run_locust.failures_in_csv(path) == (12, 1)


def test_parse_serve_latencies() -> None:
    """Serve's processing-latency sum/count lines give calls and mean ms per deployment, summed
    over replicas; other metrics are ignored."""
    text = "\n".join(
        [
            'ray_serve_deployment_processing_latency_ms_sum{a="",deployment="Validator",r="x"} 20',
            'ray_serve_deployment_processing_latency_ms_count{deployment="Validator",r="x"} 8.0',
            'ray_serve_deployment_processing_latency_ms_sum{deployment="Validator",r="y"} 10.0',
            'ray_serve_deployment_processing_latency_ms_count{deployment="Validator",r="y"} 2.0',
            'ray_serve_deployment_processing_latency_ms_bucket{deployment="Validator",le="1"} 3.0',
            'ray_serve_deployment_request_counter_total{deployment="Validator"} 10.0',
        ]
    )
    assert bench_report.parse_serve_latencies(text) == {
        "Validator": {"calls": 10.0, "mean_ms": 3.0}
    }


def test_bench_alerts_expected_events_and_latencies() -> None:
    """The alerts bench's join: events the acknowledged readings must cause (175 raises HIGH,
    the third 70 after it clears), and arrival minus acknowledgement per received event."""
    from heartrate_serve.loadtest.bench_alerts import expected_events, latencies_ms

    acks = {"u": [[1000, 5000, 70], [2000, 6000, 175], [3000, 7000, 70], [4000, 8000, 70],
                  [5000, 9000, 70], [6000, 10000, 70]]}  # fmt: skip
    assert expected_events(acks) == {("u", 2000, True), ("u", 5000, False)}
    events = [["u", 2000, True, 6040.0], ["u", 5000, False, 9100.0], ["v", 1, True, 1.0]]
    assert latencies_ms(events, acks) == [40.0, 100.0]
