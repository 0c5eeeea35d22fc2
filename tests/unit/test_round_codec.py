"""core/round_codec.py: a validation round and its answer survive the trip as bytes."""

from __future__ import annotations

import numpy as np
import pytest

from heartrate_serve.core.batches import ValidationOutput, validate_batch
from heartrate_serve.core.round_codec import (
    pack_output,
    pack_request,
    unpack_output,
    unpack_request,
)
from heartrate_serve.core.validation import ValidationRules

NOW = 1_750_000_000_000


def test_request_round_trip_keeps_every_column() -> None:
    """Extreme values included; non-contiguous and other-dtype inputs are converted."""
    bpm = np.array([0, 70, -1, 2**31 - 1], np.int64)[::1]
    ts = np.array([-(2**63), 0, NOW, 2**63 - 1], np.int64)
    low = np.arange(8, dtype=np.int32)[::2]  # a strided view
    high = np.array([0, 150, 0, 200], np.int32)
    got = unpack_request(pack_request(bpm, ts, low, high))  # type: ignore[arg-type]
    assert [a.dtype for a in got] == [np.int32, np.int64, np.int32, np.int32]
    assert [a.tolist() for a in got] == [bpm.tolist(), ts.tolist(), low.tolist(), high.tolist()]


def test_request_of_no_readings_is_empty() -> None:
    z32, z64 = np.zeros(0, np.int32), np.zeros(0, np.int64)
    assert pack_request(z32, z64, z32, z32) == b""
    assert all(len(a) == 0 for a in unpack_request(b""))


def test_request_columns_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="same length"):
        pack_request(np.zeros(2, np.int32), np.zeros(1, np.int64), np.zeros(2, np.int32),
                     np.zeros(2, np.int32))  # fmt: skip


def test_truncated_request_is_refused() -> None:
    with pytest.raises(ValueError, match="20 bytes per reading"):
        unpack_request(b"\0" * 21)


@pytest.mark.parametrize(
    "rules",
    [
        ValidationRules(),
        ValidationRules(30, 220, 45, 160, 0, None),
        ValidationRules(retention_ms=1),
    ],
)
def test_output_round_trip_keeps_reasons_classes_and_rules(rules: ValidationRules) -> None:
    """The Validator's real output for a mixed round comes back equal, rules included."""
    bpm = np.array([70, 20, 170, 45, 250], np.int32)
    ts = np.full(5, NOW - 1000, np.int64)
    zeros = np.zeros(5, np.int32)
    out = validate_batch(rules, bpm, ts, NOW, zeros, zeros)
    back = unpack_output(pack_output(out))
    assert back.reason.tolist() == out.reason.tolist()
    assert back.classification.tolist() == out.classification.tolist()
    assert back.rules == rules


def test_output_reuses_the_cached_rules_only_when_equal() -> None:
    """Same rules: the cached object itself; changed rules: a new, equal one."""
    out = ValidationOutput(np.zeros(1, np.uint8), np.zeros(1, np.uint8), ValidationRules())
    cached = ValidationRules()
    assert unpack_output(pack_output(out), cached).rules is cached
    other = ValidationRules(valid_max_bpm=200)
    got = unpack_output(pack_output(out), other).rules
    assert got == ValidationRules() and got is not other


@pytest.mark.parametrize("size", [0, 47, 49])
def test_malformed_output_is_refused(size: int) -> None:
    with pytest.raises(ValueError, match="packed validation answer"):
        unpack_output(b"\0" * size)
