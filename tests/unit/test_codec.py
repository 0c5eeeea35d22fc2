"""The chunk codec: exact round trips, the fixed header, corrupt blobs, and its compression."""

from __future__ import annotations

import struct
import zlib
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from heartrate_serve.core.errors import CorruptChunk
from heartrate_serve.store.codec import (
    HEADER_FORMAT,
    HEADER_SIZE,
    ChunkHeader,
    chunk_header,
    decode_chunk,
    encode_chunk,
)

Readings = tuple[NDArray[np.int64], NDArray[np.int32], NDArray[np.uint8]]
I32_MIN, I32_MAX = -(2**31), 2**31 - 1
GRID_FLAG = 0x04  # flags bit 2: timestamps stored as offsets from a grid


def one_hz_hour(seed: int = 3, n: int = 3600) -> Readings:
    """1 Hz readings with +-150 ms jitter, bpm wandering -3..+3 per second (folded into 40..200)."""
    rng = np.random.default_rng(seed)
    ts = 1_750_000_000_000 + np.arange(n, dtype=np.int64) * 1000 + rng.integers(-150, 151, n)
    folded = (60 + np.cumsum(rng.integers(-3, 4, n))) % 320
    bpm = (40 + np.where(folded <= 160, folded, 320 - folded)).astype(np.int32)
    cls = np.where(bpm < 50, 1, np.where(bpm > 150, 2, 0)).astype(np.uint8)
    return ts, bpm, cls


def assert_round_trip(
    ts: NDArray[np.int64], bpm: NDArray[np.int32], cls: NDArray[np.uint8]
) -> bytes:
    blob = encode_chunk(ts, bpm, cls)
    got_ts, got_bpm, got_cls = decode_chunk(blob)
    assert [a.dtype for a in (got_ts, got_bpm, got_cls)] == [np.int64, np.int32, np.uint8]
    np.testing.assert_array_equal(got_ts, ts)
    np.testing.assert_array_equal(got_bpm, bpm)
    np.testing.assert_array_equal(got_cls, cls)
    assert chunk_header(blob) == ChunkHeader(len(ts), int(ts[0]), int(ts[-1]))
    return blob


# Gaps between readings: 1 ms apart, around a second, minutes to hours off, and huge jumps.
deltas = st.one_of(
    st.integers(1, 3),
    st.integers(850, 1150),
    st.integers(4_000, 6_000),
    st.integers(60_000, 10**8),
    st.integers(10**9, 10**12),
)


@st.composite
def series(draw: st.DrawFn, max_n: int = 120) -> Readings:
    """Irregular series inside [0, 10**13): any bpm of int32 (smooth or jumpy), any class byte."""
    steps = draw(st.lists(deltas, min_size=0, max_size=max_n - 1))
    ts = np.cumsum(np.array([0, *steps], dtype=np.int64))
    ts = ts[ts < 10**13]  # a prefix: the huge jumps must stay inside the millisecond range
    start = draw(st.integers(0, 10**13 - 1 - int(ts[-1])))
    n = len(ts)
    if draw(st.booleans()):
        bpm_values = draw(st.lists(st.integers(I32_MIN, I32_MAX), min_size=n, max_size=n))
    else:
        first = draw(st.integers(20, 300))
        walk = draw(st.lists(st.integers(-4, 4), min_size=n - 1, max_size=n - 1))
        bpm_values = [int(v) for v in np.cumsum([first, *walk])]
    classes = draw(st.lists(st.sampled_from([0, 1, 2, 255]), min_size=n, max_size=n))
    return ts + start, np.array(bpm_values, np.int32), np.array(classes, np.uint8)


@st.composite
def gridded(draw: st.DrawFn) -> Readings:
    """Jittered readings on a grid (any period), missed readings, 30 min gaps, a drifting clock."""
    n = draw(st.integers(3, 400))
    period = draw(st.sampled_from([1, 2, 10, 1000, 5000, 60_000]))
    jitter = draw(st.integers(0, period // 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    slots = np.cumsum(rng.choice([1, 2, 1800], n, p=[0.95, 0.045, 0.005]))
    drift = draw(st.sampled_from([0.0, 1e-4, -3e-4]))
    ts = (slots * (period * (1 + drift))).astype(np.int64) + rng.integers(-jitter, jitter + 1, n)
    ts = np.unique(ts + draw(st.integers(0, 10**12)))
    bpm = (70 + np.cumsum(rng.integers(-3, 4, len(ts)))).astype(np.int32)
    return ts, bpm, rng.integers(0, 3, len(ts)).astype(np.uint8)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(series())
def test_irregular_series_round_trip(readings: Readings) -> None:
    """Gaps, 1 ms steps, huge jumps, single and two readings: all come back exactly."""
    assert_round_trip(*readings)


@settings(max_examples=150, deadline=None)
@given(gridded())
def test_gridded_series_round_trip(readings: Readings) -> None:
    """Readings near a grid (stored as grid offsets when smaller) come back exactly."""
    assert_round_trip(*readings)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=40, unique=True))
def test_any_int64_timestamps_round_trip(values: list[int]) -> None:
    """Far outside the millisecond range (negative, near the int64 limits) is still exact."""
    ts = np.array(sorted(values), np.int64)
    n = len(ts)
    assert_round_trip(ts, np.full(n, I32_MIN, np.int32), np.full(n, 255, np.uint8))


@pytest.mark.parametrize(
    "ts",
    [
        [0],
        [10**13 - 1],
        [0, 10**13 - 1],
        [5, 6],
        list(range(1_000, 1_100)),  # readings 1 ms apart
        [0, 1, 10**12, 10**12 + 1, 9 * 10**12],
    ],
)
def test_edge_series_round_trip(ts: list[int]) -> None:
    """Single and two readings, 1 ms apart, extremes of the millisecond range."""
    n = len(ts)
    bpm = np.resize(np.array([I32_MIN, I32_MAX, 0, 300, 20], np.int32), n)
    cls = np.resize(np.array([0, 1, 2, 255], np.uint8), n)
    assert_round_trip(np.array(ts, np.int64), bpm, cls)


def test_grid_and_delta_representations_both_round_trip() -> None:
    """A jittered 1 Hz hour sits on a grid; a random walk of intervals is stored as deltas."""
    ts, bpm, cls = one_hz_hour()
    jittered = assert_round_trip(ts, bpm, cls)
    assert jittered[1] & GRID_FLAG
    walk = 1_750_000_000_000 + np.cumsum(np.random.default_rng(4).integers(850, 1151, 3600))
    assert not assert_round_trip(walk, bpm, cls)[1] & GRID_FLAG
    drifting = (1_750_000_000_000 + np.arange(3600) * 1000.37).astype(np.int64)  # a slow clock
    assert len(assert_round_trip(drifting, bpm, cls)) < len(jittered) - 3000  # ts nearly free


def test_jittered_hour_compresses_below_1_6_bytes_per_reading() -> None:
    """~8.2 bits of jitter + ~2.8 bits of bpm steps: under 1.6 bytes per reading, all included."""
    ts, bpm, cls = one_hz_hour()
    assert len(encode_chunk(ts, bpm, cls)) / len(ts) < 1.6


def test_constant_fields_cost_almost_nothing() -> None:
    """Exact 1 Hz, constant bpm and class: the whole hour is a few dozen bytes."""
    n = 3600
    ts = 1_750_000_000_000 + np.arange(n, dtype=np.int64) * 1000
    blob = assert_round_trip(ts, np.full(n, 72, np.int32), np.zeros(n, np.uint8))
    assert len(blob) < 64


def test_header_is_fixed_and_readable_by_struct() -> None:
    """version 1, count, first and last ts at fixed offsets (what the Lua script unpacks)."""
    assert HEADER_FORMAT == "<BBIqq" and HEADER_SIZE == struct.calcsize("<BBIqq") == 22
    ts, bpm, cls = one_hz_hour(n=500)
    blob = encode_chunk(ts, bpm, cls)
    version, _flags, count, first, last = struct.unpack(HEADER_FORMAT, blob[:HEADER_SIZE])
    assert (version, count, first, last) == (1, 500, int(ts[0]), int(ts[-1]))
    assert chunk_header(blob) == ChunkHeader(count=500, first_ts=int(ts[0]), last_ts=int(ts[-1]))


def arrays(ts: list[int], bpm: list[int], cls: list[int]) -> tuple[NDArray[Any], ...]:
    return np.array(ts, np.int64), np.array(bpm, np.int64), np.array(cls, np.int64)


@pytest.mark.parametrize(
    "readings",
    [
        arrays([], [], []),  # no readings
        arrays([1, 2], [60], [0, 0]),  # unequal lengths
        arrays([1, 2], [60, 61], [0]),
        arrays([1, 1], [60, 61], [0, 0]),  # duplicate timestamp
        arrays([2, 1], [60, 61], [0, 0]),  # descending
        arrays([1, 2], [60, 2**31], [0, 0]),  # bpm beyond int32
        arrays([1, 2], [60, 61], [0, 256]),  # class beyond a byte
        arrays([1, 2], [60, 61], [0, -1]),
        (np.array([1.5, 2.5]), np.array([60, 61]), np.array([0, 0])),  # not integers
        (np.array([[1, 2]]), np.array([[60, 61]]), np.array([[0, 0]])),  # not 1-D
    ],
)
def test_invalid_readings_raise_value_error(readings: tuple[NDArray[Any], ...]) -> None:
    with pytest.raises(ValueError):
        encode_chunk(*readings)


@pytest.fixture(scope="module")
def small_blob() -> bytes:
    ts, bpm, cls = one_hz_hour(seed=5, n=40)
    cls[10:] = 2
    return encode_chunk(ts, bpm, cls)


def test_truncated_blobs_raise_corrupt_chunk(small_blob: bytes) -> None:
    for length in range(len(small_blob)):
        with pytest.raises(CorruptChunk):
            decode_chunk(small_blob[:length])
    with pytest.raises(CorruptChunk):
        decode_chunk(b"")
    with pytest.raises(CorruptChunk):
        chunk_header(small_blob[: HEADER_SIZE - 1])


def test_flipped_bytes_raise_corrupt_chunk(small_blob: bytes) -> None:
    for i in range(len(small_blob)):
        for mask in (0x01, 0x80, 0xFF):
            garbled = bytearray(small_blob)
            garbled[i] ^= mask
            with pytest.raises(CorruptChunk):
                decode_chunk(bytes(garbled))


def test_wrong_version_raises_corrupt_chunk(small_blob: bytes) -> None:
    for version in (0, 2, 255):
        blob = bytes([version]) + small_blob[1:]
        with pytest.raises(CorruptChunk, match="version"):
            chunk_header(blob)
        with pytest.raises(CorruptChunk, match="version"):
            decode_chunk(blob)


@pytest.mark.parametrize(("count", "first", "last"), [(0, 5, 5), (2, 5, 5), (1, 5, 6), (3, 9, 1)])
def test_inconsistent_header_raises_corrupt_chunk(count: int, first: int, last: int) -> None:
    blob = struct.pack(HEADER_FORMAT, 1, 0x01, count, first, last) + bytes(8)
    with pytest.raises(CorruptChunk, match="inconsistent header"):
        chunk_header(blob)


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def assert_consistent_or_corrupt(blob: bytes) -> None:
    """decode_chunk raises CorruptChunk (and nothing else), or returns what the header says."""
    try:
        ts, bpm, cls = decode_chunk(blob)
    except CorruptChunk:
        return
    header = chunk_header(blob)
    assert len(ts) == len(bpm) == len(cls) == header.count
    assert (int(ts[0]), int(ts[-1])) == (header.first_ts, header.last_ts)
    assert bool(np.all(np.diff(ts) > 0))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_garbled_payload_with_valid_checksum_raises_only_corrupt_chunk(
    small_blob: bytes, data: st.DataObject
) -> None:
    """Past the checksum, a garbled payload either decodes consistently or raises CorruptChunk."""
    body = bytearray(small_blob[:-4])
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(1, len(body) - 1))
        body[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(HEADER_SIZE, len(body)))
    blob = with_crc(bytes(body[:cut]) + data.draw(st.binary(max_size=8)))
    assert_consistent_or_corrupt(blob)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=80))
def test_arbitrary_bytes_raise_only_corrupt_chunk(payload: bytes) -> None:
    header = struct.pack(HEADER_FORMAT, 1, 0x05, 3, 1_000, 3_000)
    for blob in (payload, header + payload):
        with pytest.raises(CorruptChunk):
            decode_chunk(blob)
    assert_consistent_or_corrupt(with_crc(header + payload))
