"""The deployment-backed ports: error mapping of handle calls, and the zone port's handle choice."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError

from heartrate_serve.core.batches import ValidationOutput, ZoneJob
from heartrate_serve.core.errors import DependencyUnavailable, InvalidRequest, Overloaded
from heartrate_serve.core.round_codec import pack_output, unpack_request
from heartrate_serve.core.validation import ValidationRules
from heartrate_serve.deployments import remote_ports
from heartrate_serve.deployments.remote_ports import (
    ZONE_READINGS_PER_CALL,
    RemoteValidator,
    RemoteZones,
    _call,
)


def _task_error(cause: BaseException, traceback: str = "") -> RayTaskError:
    """A RayTaskError as a replica's failure produces it (no Ray runtime needed)."""
    text = (
        traceback or f"Traceback (most recent call last):\n  ...\n{type(cause).__name__}: {cause}"
    )
    return RayTaskError("ServeReplica:heartrate:Validator.validate", text, cause, "p", 1, "1.2.3.4")


async def _raising(error: BaseException) -> Any:
    raise error


async def _value(value: Any) -> Any:
    return value


# --- _call: error mapping -----------------------------------------------------------------------


async def test_call_returns_the_answer() -> None:
    """A call that succeeds returns its value unchanged."""
    assert await _call("Validator", _value([1, 2])) == [1, 2]


async def test_call_passes_invalid_request_on_as_is() -> None:
    """An InvalidRequest raised by the call itself is re-raised unchanged."""
    error = InvalidRequest("age", "age must be 1-120")
    with pytest.raises(InvalidRequest) as info:
        await _call("ZoneCalculator", _raising(error))
    assert info.value is error


async def test_call_unwraps_invalid_request_from_ray_task_error() -> None:
    """A RayTaskError caused by InvalidRequest raises that InvalidRequest (its field and text)."""
    cause = InvalidRequest("timestamps", "timestamps must have one entry per bpm")
    with pytest.raises(InvalidRequest) as info:
        await _call("Validator", _raising(_task_error(cause)))
    assert info.value is cause
    assert info.value.__cause__ is None and info.value.__suppress_context__


async def test_call_unwraps_invalid_request_as_ray_raises_it() -> None:
    """Ray's dual RayTaskError(InvalidRequest) passes on the plain cause, not Ray's traceback."""
    cause = InvalidRequest("timestamps", "timestamps must have one entry per bpm")
    dual = _task_error(cause).as_instanceof_cause()
    assert isinstance(dual, InvalidRequest) and isinstance(dual, RayTaskError)
    with pytest.raises(InvalidRequest) as info:
        await _call("Validator", _raising(dual))
    assert not isinstance(info.value, RayTaskError)
    assert str(info.value) == "timestamps must have one entry per bpm"


@pytest.mark.parametrize("as_ray_raises_it", [False, True], ids=["plain", "as-instance-of-cause"])
@pytest.mark.parametrize(
    "cause",
    [RuntimeError("replica crashed"), ValueError("bad shape"), KeyError("x"), ZeroDivisionError()],
)
async def test_call_maps_other_ray_task_errors_to_dependency_unavailable(
    cause: BaseException, as_ray_raises_it: bool
) -> None:
    """A replica's other exception is DependencyUnavailable naming the deployment and the cause."""
    error = _task_error(cause)
    raised = error.as_instanceof_cause() if as_ray_raises_it else error
    with pytest.raises(DependencyUnavailable) as info:
        await _call("Validator", _raising(raised))
    text = str(info.value)
    assert text.startswith("Validator failed on this part of the work")
    assert type(cause).__name__ in text
    assert "retry later" in text
    assert info.value.__cause__ is raised


async def test_call_maps_back_pressure_to_overloaded() -> None:
    """A full deployment queue (BackPressureError) is Overloaded naming the deployment."""
    error = BackPressureError(num_queued_requests=100, max_queued_requests=100)
    with pytest.raises(Overloaded, match="^ZoneCalculator is at capacity") as info:
        await _call("ZoneCalculator", _raising(error))
    assert info.value.__cause__ is error


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("boom"),
        ConnectionError("connection reset"),
        TimeoutError(),
        OSError("message larger than max (5000000 vs. 4194304)"),
        RayActorError(),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_call_maps_anything_else_to_dependency_unavailable(error: Exception) -> None:
    """Any other failure (replica died, transport refused, ...) is DependencyUnavailable."""
    with pytest.raises(DependencyUnavailable) as info:
        await _call("ZoneCalculator", _raising(error))
    text = str(info.value)
    assert text.startswith(
        f"ZoneCalculator failed on this part of the work ({type(error).__name__}"
    )
    assert "nothing of it was stored" in text
    assert info.value.__cause__ is error


async def test_unavailable_message_keeps_first_line_only_and_is_bounded() -> None:
    """Only the first line of the cause's text, at most 200 characters, reaches the message."""
    error = RuntimeError("x" * 500 + "\nsecond line with a traceback")
    with pytest.raises(DependencyUnavailable) as info:
        await _call("Validator", _raising(error))
    text = str(info.value)
    assert "x" * 200 in text and "x" * 201 not in text
    assert "second line" not in text


async def test_unavailable_message_for_an_empty_error_text() -> None:
    """An exception without text still gives a message naming its type."""
    with pytest.raises(DependencyUnavailable, match=r"\(RuntimeError: \)"):
        await _call("Validator", _raising(RuntimeError()))


async def test_call_does_not_swallow_cancellation() -> None:
    """Cancellation passes through unchanged (it is not a dependency failure)."""
    with pytest.raises(asyncio.CancelledError):
        await _call("Validator", _raising(asyncio.CancelledError()))


# --- fake handles -------------------------------------------------------------------------------


@dataclass
class FakeMethod:
    """handle.<method>: .remote(...) records the call and returns an awaitable answer."""

    answer: Any
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def remote(self, *args: Any) -> Awaitable[Any]:
        self.calls.append(args)
        if isinstance(self.answer, BaseException):
            return _raising(self.answer)
        return _value(self.answer)


class FakeHandle:
    """A DeploymentHandle stand-in: named methods, and options() giving a by-reference twin."""

    def __init__(self, name: str, **methods: Any) -> None:
        self.name = name
        self._methods = {k: FakeMethod(v) for k, v in methods.items()}
        self.options_calls: list[dict[str, Any]] = []
        self.by_reference: FakeHandle | None = None

    def __getattr__(self, name: str) -> FakeMethod:
        try:
            return self.__dict__["_methods"][name]
        except KeyError:
            raise AttributeError(name) from None

    def options(self, **kwargs: Any) -> FakeHandle:
        self.options_calls.append(kwargs)
        twin = FakeHandle(f"{self.name}+ref", **{k: m.answer for k, m in self._methods.items()})
        self.by_reference = twin
        return twin


def _job(n: int) -> ZoneJob:
    return ZoneJob(np.arange(n, dtype=np.int64), np.full(n, 120, np.int32), {"age": 30})


# --- RemoteZones --------------------------------------------------------------------------------


def test_zones_port_asks_for_a_by_reference_handle_once() -> None:
    """The port derives one by-reference handle (options(_by_reference=True)) at construction."""
    handle = FakeHandle("zones", analyse=[])
    RemoteZones(handle)  # type: ignore[arg-type]
    assert handle.options_calls == [{"_by_reference": True}]


@pytest.mark.parametrize(
    ("sizes", "by_reference"),
    [
        ([1], False),
        ([10], False),
        ([11], True),
        ([5, 5], False),
        ([5, 6], True),
        ([3, 3, 3, 1], False),
        ([1000], True),
        ([], False),
    ],
)
async def test_zones_port_uses_by_reference_only_over_the_limit(
    sizes: list[int], by_reference: bool
) -> None:
    """A part over max_readings_per_call goes by reference; others over the plain handle."""
    handle = FakeHandle("zones", analyse=["ok"])
    port = RemoteZones(handle)  # type: ignore[arg-type]
    port.max_readings_per_call = 10
    jobs = [_job(n) for n in sizes]
    assert await port.analyse(jobs) == ["ok"]
    assert handle.by_reference is not None
    used, unused = (handle.by_reference, handle) if by_reference else (handle, handle.by_reference)
    assert len(used.analyse.calls) == 1 and unused.analyse.calls == []
    sent = used.analyse.calls[0][0]
    assert isinstance(sent, list) and sent == jobs


async def test_zones_port_default_limit_is_the_transport_limit() -> None:
    """With the default limit, ZONE_READINGS_PER_CALL readings go plain, one more by reference."""
    handle = FakeHandle("zones", analyse=[])
    port = RemoteZones(handle)  # type: ignore[arg-type]
    await port.analyse([_job(ZONE_READINGS_PER_CALL)])
    await port.analyse([_job(ZONE_READINGS_PER_CALL), _job(1)])
    assert handle.by_reference is not None
    assert len(handle.analyse.calls) == 1 and len(handle.by_reference.analyse.calls) == 1


@pytest.mark.parametrize("by_reference", [False, True])
async def test_zones_port_maps_errors_naming_the_zone_calculator(by_reference: bool) -> None:
    """A failed ZoneCalculator call (either handle) is DependencyUnavailable naming it."""
    handle = FakeHandle("zones", analyse=RuntimeError("replica died"))
    port = RemoteZones(handle)  # type: ignore[arg-type]
    port.max_readings_per_call = 10
    with pytest.raises(DependencyUnavailable, match="^ZoneCalculator failed"):
        await port.analyse([_job(20 if by_reference else 5)])


@pytest.mark.parametrize("up", [True, False])
async def test_zones_port_ping(up: bool) -> None:
    """ping() answers what the deployment's ping answers."""
    port = RemoteZones(FakeHandle("zones", ping=up))  # type: ignore[arg-type]
    assert await port.ping() is up


# --- RemoteValidator ----------------------------------------------------------------------------


@dataclass
class Clock:
    """A settable stand-in for time.monotonic."""

    now: float = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """time.monotonic as seen by remote_ports, under the test's control."""
    c = Clock()
    monkeypatch.setattr(remote_ports, "time", SimpleNamespace(monotonic=c))
    return c


def _output(rules: ValidationRules) -> bytes:
    """A Validator's answer (packed) for one reading under rules."""
    return pack_output(ValidationOutput(np.zeros(1, np.uint8), np.zeros(1, np.uint8), rules))


async def test_validator_port_sends_the_part_and_returns_its_output(clock: Clock) -> None:
    """validate() makes one Validator call with the part packed and returns its output."""
    sent = ValidationOutput(
        np.array([0, 1], np.uint8), np.array([2, 0], np.uint8), ValidationRules()
    )
    handle = FakeHandle("validator", validate=pack_output(sent))
    port = RemoteValidator(handle)  # type: ignore[arg-type]
    bpm, ts = np.array([70, 20], np.int32), np.array([5, 6], np.int64)
    low, high = np.array([0, 55], np.int32), np.zeros(2, np.int32)
    out = await port.validate(bpm, ts, 7, low, high)
    assert out.reason.tolist() == [0, 1] and out.classification.tolist() == [2, 0]
    assert out.rules == sent.rules
    ((packed, now_ms),) = handle.validate.calls
    assert now_ms == 7
    assert [a.tolist() for a in unpack_request(packed)] == [[70, 20], [5, 6], [0, 55], [0, 0]]


async def test_validator_port_maps_errors_naming_the_validator(clock: Clock) -> None:
    """A failed Validator call is DependencyUnavailable (or Overloaded) naming it."""
    port = RemoteValidator(FakeHandle("validator", validate=RuntimeError("gone")))  # type: ignore[arg-type]
    z = np.zeros(1, np.int32)
    with pytest.raises(DependencyUnavailable, match="^Validator failed"):
        await port.validate(z, z.astype(np.int64), 0, z, z)
    full = BackPressureError(num_queued_requests=1, max_queued_requests=1)
    port = RemoteValidator(FakeHandle("validator", validate=full))  # type: ignore[arg-type]
    with pytest.raises(Overloaded, match="^Validator is at capacity"):
        await port.validate(z, z.astype(np.int64), 0, z, z)


async def test_validator_rules_are_cached_for_the_ttl(clock: Clock) -> None:
    """rules() asks the Validator at most once per RULES_TTL_S."""
    handle = FakeHandle("validator", rules=ValidationRules(valid_max_bpm=200))
    port = RemoteValidator(handle)  # type: ignore[arg-type]
    assert (await port.rules()).valid_max_bpm == 200
    clock.now += remote_ports.RULES_TTL_S - 0.1
    await port.rules()
    assert len(handle.rules.calls) == 1
    clock.now += 0.1
    await port.rules()
    assert len(handle.rules.calls) == 2


async def test_validator_rules_come_with_each_validation(clock: Clock) -> None:
    """A validation's rules refresh the cache: rules() then needs no call."""
    rules = ValidationRules(valid_min_bpm=30)
    handle = FakeHandle("validator", validate=_output(rules), rules=ValidationRules())
    port = RemoteValidator(handle)  # type: ignore[arg-type]
    z = np.zeros(1, np.int32)
    await port.validate(z, z.astype(np.int64), 0, z, z)
    assert await port.rules() == rules
    assert handle.rules.calls == []


async def test_validator_rules_fall_back_to_last_known_when_down(clock: Clock) -> None:
    """With the Validator down, rules() answers the last known rules; with none known, raises."""
    handle = FakeHandle("validator", rules=ValidationRules(valid_max_bpm=190))
    port = RemoteValidator(handle)  # type: ignore[arg-type]
    await port.rules()
    handle.rules.answer = RuntimeError("down")
    clock.now += 60
    assert (await port.rules()).valid_max_bpm == 190
    fresh = RemoteValidator(FakeHandle("validator", rules=RuntimeError("down")))  # type: ignore[arg-type]
    with pytest.raises(DependencyUnavailable, match="^Validator failed"):
        await fresh.rules()
