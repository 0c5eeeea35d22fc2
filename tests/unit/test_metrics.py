"""deployments/metrics.py without Ray: a fake backend records what RayMetrics would export."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest

from heartrate_serve.core.batches import ZoneJob
from heartrate_serve.core.validation import ValidationRules
from heartrate_serve.runtime import observability as obs
from heartrate_serve.runtime.redis_watch import RedisUpGauge
from heartrate_serve.service import metrics as m
from heartrate_serve.service.bands import ProfileBands
from heartrate_serve.service.local_ports import LocalValidator
from heartrate_serve.service.pipeline import ReadingBatch, ReadingPipeline
from heartrate_serve.settings import Settings
from heartrate_serve.store.store import StoreUnavailable, WriteResult

NOW = time.time_ns() // 1_000_000
DUP_TS = NOW - 1000


class FakeMetric:
    """Records every inc/set/observe as (value, tags)."""

    def __init__(self, name: str, description: str = "", *args: Any, **kwargs: Any) -> None:
        self.name = name
        self.calls: list[tuple[float, dict[str, str]]] = []

    def _record(self, value: float, tags: dict[str, str] | None = None) -> None:
        assert isinstance(value, int | float) and not isinstance(value, bool), value
        self.calls.append((value, dict(tags or {})))

    inc = set = observe = _record

    def total(self, **tags: str) -> float:
        """Sum of recorded values whose tags include `tags`."""
        return sum(v for v, t in self.calls if tags.items() <= t.items())


class FakeBackend:
    """Stands in for ray.serve.metrics: Counter, Gauge and Histogram by name."""

    def __init__(self) -> None:
        self.metrics: dict[str, FakeMetric] = {}

    def _make(self, name: str, *args: Any, **kwargs: Any) -> FakeMetric:
        metric = self.metrics[name] = FakeMetric(name, *args, **kwargs)
        return metric

    Counter = Gauge = Histogram = _make


@pytest.fixture
def backend() -> Iterator[FakeBackend]:
    """RayMetrics on a fake backend installed as the process's metrics, then the no-op again."""
    fake = FakeBackend()
    previous = m.use(obs.RayMetrics(fake))
    yield fake
    m.use(previous)


def test_default_metrics_are_the_no_op() -> None:
    """Outside a replica nothing is installed: current() is the no-op ServiceMetrics."""
    assert type(m.current()) is m.ServiceMetrics
    m.current().outcome("SubmitHeartRate", np.zeros(1, np.uint8), np.zeros(1, np.bool_))


def test_observe_replica_outside_serve_changes_nothing(tmp_path: Any) -> None:
    """observe_replica returns the settings and installs nothing without a replica context."""
    settings = Settings(log_dir=tmp_path / "log")
    assert obs.observe_replica(settings) is settings
    assert type(m.current()) is m.ServiceMetrics
    assert not (tmp_path / "log").exists()


def test_tally_splits_accepted_rejected_duplicate() -> None:
    """Reason 0 and not duplicate is accepted; reasons are named; duplicates counted apart."""
    reason = np.array([0, 0, 1, 5, 1, 0], np.uint8)
    dup = np.array([False, True, False, False, False, False])
    assert m.tally(reason, dup) == (2, {"bpm_out_of_range": 2, "store_unavailable": 1}, 1)


def test_tally_of_unknown_reason_uses_its_number() -> None:
    """A reason code the enum does not know is labelled with its number."""
    assert m.tally(np.array([99], np.uint8), np.zeros(1, np.bool_)) == (0, {"99": 1}, 0)


@pytest.mark.parametrize(
    ("code", "dup"), [(0, False), (0, True), (1, False), (5, False), (99, False)]
)
def test_tally_of_one_reading_matches_the_array_rule(code: int, dup: bool) -> None:
    """The one-reading shortcut counts as the general path does (same reading twice)."""
    one = m.tally(np.array([code], np.uint8), np.array([dup]))
    two = m.tally(np.array([code, code], np.uint8), np.array([dup, dup]))
    assert (2 * one[0], {k: 2 * v for k, v in one[1].items()}, 2 * one[2]) == two


def test_alert_counts_by_type() -> None:
    """Raised alerts take the user's active type; a raise cleared in the batch is unknown."""
    events = {"a": (1, 0), "b": (2, 1), "c": (0, 1), "d": (1, 1), "e": (0, 0)}
    active = {"a": (2, 5), "b": (1, 7), "c": (0, 0), "d": (0, 0), "e": (0, 0)}
    assert m.alert_counts(events, active) == ({"high": 1, "low": 2, "unknown": 1}, 3)


def test_readings_counted_per_rpc(backend: FakeBackend) -> None:
    """outcome() increments accepted, duplicate and rejected-by-reason with the rpc tag."""
    reason = np.array([0, 0, 2, 0], np.uint8)
    m.current().outcome("SubmitHeartRateBatch", reason, np.array([False, True, False, False]))
    met = backend.metrics
    assert met["heartrate_readings_accepted"].total(rpc="SubmitHeartRateBatch") == 2
    assert met["heartrate_readings_duplicate"].total(rpc="SubmitHeartRateBatch") == 1
    rejected = met["heartrate_readings_rejected"]
    assert rejected.calls == [(1, {"rpc": "SubmitHeartRateBatch", "reason": "timestamp_too_old"})]


def test_zero_counts_are_not_recorded(backend: FakeBackend) -> None:
    """Ray counters reject inc(0): nothing is recorded for empty categories."""
    m.current().readings("SubmitHeartRate", 0, {"bpm_out_of_range": 0}, 0)
    m.current().alerts({"u": (0, 0)}, {"u": (0, 0)})
    for name in ("accepted", "duplicate", "rejected"):
        assert backend.metrics[f"heartrate_readings_{name}"].calls == []
    assert backend.metrics["heartrate_alerts_cleared"].calls == []


def test_alerts_stream_health_and_batches(backend: FakeBackend) -> None:
    """Alerts by type, the streams gauge, health and batch-size histograms."""
    cur = m.current()
    cur.alerts({"u": (1, 1), "v": (0, 2)}, {"u": (2, 1), "v": (0, 0)})
    cur.stream(True)
    cur.stream(True)
    cur.stream(False)
    cur.health(True)
    cur.batch(3, 250)
    met = backend.metrics
    assert met["heartrate_alerts_raised"].calls == [(1, {"type": "high"})]
    assert met["heartrate_alerts_cleared"].total() == 3
    assert [v for v, _ in met["heartrate_active_streams"].calls] == [0, 1, 2, 1]
    assert met["heartrate_health_serving"].calls == [(1, {})]
    assert met["heartrate_batch_size"].calls == [
        (3, {"kind": "group_commit"}),
        (250, {"kind": "validator"}),
    ]


def test_redis_timed_records_latency_and_errors(backend: FakeBackend) -> None:
    """A wrapped guard times each call in ms; a failing call also counts an error by op."""

    @m.redis_timed
    @contextlib.contextmanager
    def guard(op: str) -> Iterator[None]:
        yield

    with guard("recent"):
        pass
    with pytest.raises(StoreUnavailable), guard("write_batch"):
        raise StoreUnavailable("down")
    latency = backend.metrics["heartrate_redis_latency_ms"].calls
    assert [t for _, t in latency] == [{"op": "recent"}, {"op": "write_batch"}]
    assert all(0 <= v < 1000 for v, _ in latency)
    assert backend.metrics["heartrate_redis_errors"].calls == [(1, {"op": "write_batch"})]


async def test_timed_zones_records_latency_and_readings(backend: FakeBackend) -> None:
    """timed_zones awaits the call and records one latency and each job's readings."""

    async def analyse_many(jobs: list[Any]) -> list[int]:
        return [job.readings for job in jobs]

    jobs = [ZoneJob(np.arange(5), np.arange(5), {}), ZoneJob(np.arange(7), np.arange(7), {})]
    assert await m.timed_zones(analyse_many, jobs) == [5, 7]
    assert len(backend.metrics["heartrate_zone_latency_ms"].calls) == 1
    assert [v for v, _ in backend.metrics["heartrate_zone_readings"].calls] == [5, 7]


class FakeStore:
    """The two store calls the pipeline makes, in memory; DUP_TS is stored already."""

    async def get_profiles(self, users: Sequence[str]) -> dict[str, dict[str, Any]]:
        return {}

    async def write_batch(self, users: Sequence[str], ts: Any, *_: Any) -> WriteResult:
        alerts = {u: (2, 1) for u in users}
        return WriteResult(np.asarray(ts) == DUP_TS, alerts, {u: (1, 0) for u in users})


def _pipeline() -> ReadingPipeline:
    store: Any = FakeStore()
    return ReadingPipeline(store, LocalValidator(ValidationRules()), ProfileBands(store, 5.0))


async def test_pipeline_works_with_no_op_metrics() -> None:
    """The pipeline (as the baseline server uses it) runs with the default no-op metrics."""
    batch = ReadingBatch("u", np.array([70, 200], np.int32), np.array([NOW - 5, NOW - 6]))
    out = await _pipeline().submit(batch)
    assert out.reason.tolist() == [0, 1]


async def test_pipeline_reports_readings_batches_and_alerts(backend: FakeBackend) -> None:
    """One submit: readings per rpc, one group-commit round, the alert raised as HIGH."""
    ts = np.array([NOW - 5, NOW - 6, DUP_TS], np.int64)
    batch = ReadingBatch("u", np.array([160, 200, 70], np.int32), ts)
    await _pipeline().submit(batch, "StreamHeartRate")
    m.current().flush()  # reading counts are summed and handed over once a second
    met = backend.metrics
    assert met["heartrate_readings_accepted"].total(rpc="StreamHeartRate") == 1
    assert met["heartrate_readings_duplicate"].total(rpc="StreamHeartRate") == 1
    assert met["heartrate_readings_rejected"].total(reason="bpm_out_of_range") == 1
    assert met["heartrate_batch_size"].calls == [
        (1, {"kind": "group_commit"}),
        (3, {"kind": "validator"}),
    ]
    assert met["heartrate_alerts_raised"].calls == [(1, {"type": "high"})]


class FakeGauge:
    """A gauge that keeps its last value."""

    def __init__(self, *args: Any) -> None:
        self.value: float | None = None

    def set(self, value: float) -> None:
        self.value = value


def test_redis_up_gauge_is_zero_without_redis() -> None:
    """No URL, or nothing listening: heartrate_redis_up is 0 and poll() answers False."""
    backend = type("B", (), {"Gauge": FakeGauge})
    for url in (None, "redis://127.0.0.1:1/0"):
        watch = RedisUpGauge(url, backend=backend)
        assert watch.poll() is False
        assert watch._gauge.value == 0


async def test_reading_counts_are_summed_until_flushed(backend: FakeBackend) -> None:
    """Inside an event loop RayMetrics sums reading counts and hands them over in one call."""
    metrics = m.current()
    metrics.readings("SubmitHeartRate", 1, {}, 0)
    metrics.readings("SubmitHeartRate", 2, {"bpm_out_of_range": 1}, 0)
    assert backend.metrics["heartrate_readings_accepted"].calls == []
    metrics.flush()
    assert backend.metrics["heartrate_readings_accepted"].calls == [(3, {"rpc": "SubmitHeartRate"})]
    assert backend.metrics["heartrate_readings_rejected"].total(reason="bpm_out_of_range") == 1


async def test_gauges_are_recorded_again_while_nothing_changes(
    backend: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the first stream event the open-streams gauge is re-recorded periodically (Ray's
    agent drops gauges that are not recorded for a while)."""
    monkeypatch.setattr(obs, "GAUGE_REFRESH_S", 0.01)
    m.current().stream(True)
    gauge = backend.metrics["heartrate_active_streams"]
    recorded = len(gauge.calls)
    for _ in range(100):
        await asyncio.sleep(0.01)
        if len(gauge.calls) >= recorded + 2:
            break
    assert len(gauge.calls) >= recorded + 2 and gauge.calls[-1][0] == 1
