"""Work-based autoscaling: the replicas' readings/s meter and the policy Serve's controller runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from heartrate_serve.deployments import autoscaling
from heartrate_serve.deployments.autoscaling import (
    METRIC,
    ReadingsRatePolicy,
    WorkMeter,
    desired_replicas,
)
from heartrate_serve.settings import packaged_serve_config


@dataclass
class Clock:
    """A settable stand-in for time.monotonic."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """time.monotonic as seen by the autoscaling module, under the test's control."""
    c = Clock()
    monkeypatch.setattr(autoscaling, "time", SimpleNamespace(monotonic=c))
    return c


def _meter(clock: Clock, events: list[tuple[float, int]], window_s: float = 10.0) -> WorkMeter:
    """A meter started at clock 0 (relative), with readings added at the given relative times."""
    start = clock.now
    meter = WorkMeter(window_s)
    for t, n in events:
        clock.now = start + t
        meter.add(n)
    return meter


# --- WorkMeter ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("events", "at", "rate"),
    [
        ([], 0.0, 0.0),
        ([], 50.0, 0.0),
        # Younger than 1 s: divided by 1 s, not by the age (no huge rates at start-up).
        ([(0.0, 100)], 0.0, 100.0),
        ([(0.2, 100)], 0.5, 100.0),
        ([(0.5, 100)], 1.0, 100.0),
        # Younger than the window: divided by the age.
        ([(1.0, 100)], 2.0, 50.0),
        ([(1.0, 100), (3.0, 300)], 4.0, 100.0),
        ([(5.0, 1000)], 5.0, 200.0),
        # Older than the window: divided by the window; older readings drop out.
        ([(15.0, 500)], 20.0, 50.0),
        ([(1.0, 100), (15.0, 200)], 20.0, 20.0),
        ([(9.0, 100), (15.0, 200)], 20.0, 20.0),
        ([(10.0, 100), (15.0, 200)], 20.0, 30.0),  # exactly at the window's edge: still in
        ([(10.5, 100), (19.9, 200)], 20.0, 30.0),
        ([(1.0, 100), (2.0, 100)], 100.0, 0.0),
    ],
)
def test_meter_rate(clock: Clock, events: list[tuple[float, int]], at: float, rate: float) -> None:
    """Readings per second over the last window, over the age while younger (at least 1 s)."""
    start = clock.now
    meter = _meter(clock, events)
    clock.now = start + at
    assert meter.rate() == pytest.approx(rate)


def test_meter_window_is_configurable(clock: Clock) -> None:
    """A 2 s window counts only the last 2 s of readings."""
    start = clock.now
    meter = _meter(clock, [(5.0, 100), (9.0, 40)], window_s=2.0)
    clock.now = start + 10.0
    assert meter.rate() == pytest.approx(20.0)


def test_meter_rate_falls_as_readings_age_out(clock: Clock) -> None:
    """The same meter reports less as its readings leave the window."""
    start = clock.now
    meter = _meter(clock, [(20.0, 100), (25.0, 100)])
    rates = []
    for t in (25.0, 30.0, 35.0, 40.0):
        clock.now = start + t
        rates.append(meter.rate())
    assert rates == pytest.approx([20.0, 20.0, 10.0, 0.0])


def test_meter_stats_report_the_rate_under_the_metric_name(clock: Clock) -> None:
    """stats() is {"readings_per_s": rate()}, what record_autoscaling_stats reports."""
    start = clock.now
    meter = _meter(clock, [(12.0, 300)])
    clock.now = start + 12.0
    assert meter.stats() == {"readings_per_s": pytest.approx(30.0)}
    assert METRIC == "readings_per_s"


# --- ReadingsRatePolicy -------------------------------------------------------------------------


@dataclass
class Ctx:
    """The parts of Serve's AutoscalingContext the policy reads."""

    target_num_replicas: int
    aggregated_metrics: Any = field(default_factory=dict)


def _ctx(loads: list[float] | None, current: int = 3) -> Ctx:
    if loads is None:
        return Ctx(current, {})
    return Ctx(current, {METRIC: {f"replica-{i}": v for i, v in enumerate(loads)}})


@pytest.mark.parametrize(
    ("loads", "target", "replicas"),
    [
        ([0.0], 100, 1),
        ([0.0, 0.0, 0.0], 100, 1),
        ([1.0], 100, 1),
        ([100.0], 100, 1),
        ([100.5], 100, 2),
        ([50.0, 50.0], 100, 1),
        ([50.0, 50.0, 1.0], 100, 2),
        ([1000.0], 100, 10),
        ([250.0, 250.0, 250.0, 250.0], 100, 10),
        ([999.0, 1.0], 100, 10),
        ([1001.0], 100, 11),
        ([150_000.0], 100_000, 2),
        ([90_000.0, 90_000.0], 100_000, 2),
        ([1_000_000.0], 500_000, 2),
        ([3.0], 0.5, 6),
    ],
)
def test_policy_asks_for_total_load_over_target(
    loads: list[float], target: float, replicas: int
) -> None:
    """Desired replicas = ceil(sum of replicas' readings/s / target), at least 1."""
    assert ReadingsRatePolicy(target)(_ctx(loads)) == (replicas, {})


@pytest.mark.parametrize(
    "ctx",
    [
        Ctx(3, {}),
        Ctx(3, None),
        Ctx(3, {METRIC: {}}),
        Ctx(3, {"other_metric": {"r": 1e9}}),
    ],
    ids=["empty", "none", "no-replicas", "other-metric"],
)
def test_policy_keeps_target_without_reports(ctx: Ctx) -> None:
    """No readings/s reported yet: the current target is kept."""
    assert ReadingsRatePolicy(100)(ctx) == (3, {})


@pytest.mark.parametrize("current", [1, 2, 7])
def test_policy_without_reports_returns_the_current_target(current: int) -> None:
    """The kept value is the context's target_num_replicas, whatever it is."""
    assert ReadingsRatePolicy(100)(_ctx(None, current)) == (current, {})


def test_policy_ignores_the_current_target_when_reports_exist() -> None:
    """With reports, the answer depends on the load only (Serve applies min/max and delays)."""
    assert ReadingsRatePolicy(100)(_ctx([450.0], current=1)) == (5, {})
    assert ReadingsRatePolicy(100)(_ctx([450.0], current=9)) == (5, {})


@pytest.mark.parametrize("target", [0, 0.0, -1, -100.5])
def test_policy_refuses_non_positive_target(target: float) -> None:
    """target_readings_per_s <= 0 raises ValueError naming it."""
    with pytest.raises(ValueError, match="target_readings_per_s"):
        ReadingsRatePolicy(target)


def test_policy_target_is_a_float() -> None:
    """An int target (as YAML gives) is kept as a float."""
    policy = ReadingsRatePolicy(100_000)
    assert isinstance(policy.target, float) and policy.target == 100_000.0


@pytest.mark.parametrize(
    ("total", "target", "replicas"),
    [
        (0.0, 10.0, 1),
        (-5.0, 10.0, 1),
        (0.001, 10.0, 1),
        (10.0, 10.0, 1),
        (10.000001, 10.0, 2),
        (95.0, 10.0, 10),
        (1e6, 1e5, 10),
    ],
)
def test_desired_replicas(total: float, target: float, replicas: int) -> None:
    """ceil(total / target), never below 1."""
    assert desired_replicas(total, target) == replicas


def test_serve_config_policy_targets_are_accepted() -> None:
    """Every ReadingsRatePolicy in serve_config.yaml names this class with a valid target."""
    config = yaml.safe_load(packaged_serve_config().read_text())
    policies = [
        d["autoscaling_config"]["policy"]
        for app in config["applications"]
        for d in app["deployments"]
        if "policy" in d.get("autoscaling_config", {})
    ]
    assert policies
    for policy in policies:
        module, _, name = policy["policy_function"].partition(":")
        assert (module, name) == ("heartrate_serve.deployments.autoscaling", "ReadingsRatePolicy")
        assert ReadingsRatePolicy(**policy["policy_kwargs"]).target > 0
