"""Compressed chunks of heart-rate readings: one user's readings of one time span as one blob.

Layout, little-endian: the header (HEADER_FORMAT: version u8 = 1, flags u8, count u32, first_ts
i64, last_ts i64; fixed, so Redis Lua reads it with struct.unpack('<BBI4i8i8', blob)); then the
timestamps, bpm and classification fields; then a u32 zlib.crc32 of everything before it. A field
is a few varints and width codes, then byte planes: the low bytes of all its values, the next
bytes, ... (a top plane of 0/1 values bit-packed), each framed by varint(2 * length + raw) and
brotli-compressed on its own, or raw when that is not smaller. Flags: bits 0-1 codec (1 brotli),
bit 2 timestamps on a grid, bit 3 bpm as offsets from the minimum; bits 4-7 zero. Per chunk,
each field takes the representation that compresses smaller:
  ts, grid:   first_ts - off[0] + (k * period_us + 500) // 1000 + off, k = cumsum(dk), k[0] = 0;
              varint period_us, planes dk (n - 1 values) and zigzag(off) (n values).
  ts, deltas: first_ts + cumsum(median + unzigzag(r)) in wrapping uint64 arithmetic (exact for
              any int64); varint median, planes r (n - 1 values).
  bpm:        zigzag varint first + zigzag deltas, or zigzag varint minimum + offsets.
Jitter of +-150 ms around a 1 s grid (~8.2 bits) costs a raw plane of low bytes plus a packed
plane of high bits; a bpm random walk costs about the entropy of its steps.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import brotli  # type: ignore[import-untyped]
import numpy as np
from numpy.typing import NDArray

from heartrate_serve.core.errors import CorruptChunk
from heartrate_serve.store.byte_planes import (
    BROTLI,
    I64,
    Codec,
    PlaneReader,
    framed,
    split_planes,
    unzigzag,
    unzz,
    varint,
    zigzag,
    zz,
)

HEADER_FORMAT = "<BBIqq"
HEADER_SIZE = struct.calcsize(HEADER_FORMAT)
_MAX_READINGS = 1 << 22  # per chunk (48 days at 1 Hz): bounds what a garbled count can allocate

_VERSION = 1
_CRC = struct.Struct("<I")
_CODEC_MASK, _TS_GRID, _BPM_OFFSET, _RESERVED = 0x03, 0x04, 0x08, 0xF0
_GRID_MAX_SPAN_MS = 1 << 50  # grid arithmetic stays far inside int64 below this span

_Candidate = tuple[int, bytes, list[bytes]]  # flag bits, field head, byte planes


@dataclass(frozen=True)
class ChunkHeader:
    """The fixed header of a chunk: how many readings, the first and the last timestamp (ms)."""

    count: int
    first_ts: int
    last_ts: int


def _middle(x: NDArray[np.uint64] | NDArray[np.float64]) -> float:
    """The upper median, without numpy's averaging: only a typical value is needed."""
    return float(np.partition(x, x.size // 2)[x.size // 2])


def _ts_candidates(ts: I64) -> list[_Candidate]:
    """Deltas from the median delta; and, when the span allows, offsets from a fitted grid."""
    u = ts.view(np.uint64)
    du = u[1:] - u[:-1]
    median = min(int(_middle(du)), 1 << 63) if du.size else 0
    code, planes = split_planes(zigzag((du - np.uint64(median)).view(np.int64)))
    out: list[_Candidate] = [(0, varint(median) + bytes([code]), planes)]
    if ts.size < 3 or int(ts[-1]) - int(ts[0]) >= _GRID_MAX_SPAN_MS:
        return out
    rel, d = ts - ts[0], du.view(np.int64)
    relf, step = rel.astype(np.float64), max(median, 1)
    m = np.rint(d / step)  # grid steps per delta; a run of small steps telescopes to its span
    near = (m >= 1) & (m <= 4)
    period = float(d[near].sum()) / float(m[near].sum()) if near.any() else float(step)
    kc = np.rint(relf / period)
    kc -= kc.mean()
    if (den := float(kc @ kc)) > 0:  # least squares on the grid indices: drift included
        period = float(kc @ relf) / den
    period_us = max(round(period * 1000), 1)
    period = period_us / 1000
    phase = _middle(relf - np.rint(relf / period) * period)
    k = np.rint((relf - phase) / period).astype(np.int64)
    if k[0] != 0:
        phase, k = 0.0, np.rint(relf / period).astype(np.int64)
    off = rel - round(phase) - (k * period_us + 500) // 1000
    code_k, planes_k = split_planes(np.diff(k).view(np.uint64))
    code_o, planes_o = split_planes(zigzag(off))
    out.append((_TS_GRID, varint(period_us) + bytes([code_k, code_o]), planes_k + planes_o))
    return out


def _bpm_candidates(bpm: I64) -> list[_Candidate]:
    """First value + deltas (a wandering heart rate); minimum + offsets (a jumpy one)."""
    code_d, planes_d = split_planes(zigzag(np.diff(bpm)))
    low = int(bpm.min())
    code_o, planes_o = split_planes((bpm - low).view(np.uint64))
    return [
        (0, varint(zz(int(bpm[0]))) + bytes([code_d]), planes_d),
        (_BPM_OFFSET, varint(zz(low)) + bytes([code_o]), planes_o),
    ]


def _checked(values: NDArray[np.generic], name: str, low: int, high: int) -> I64:
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must be a 1-D integer array, not {arr.dtype} {arr.shape}")
    if arr.size and (int(arr.min()) < low or int(arr.max()) > high):
        raise ValueError(f"{name} out of range [{low}, {high}]")
    return arr.astype(np.int64)


def _encode(
    ts_ms: NDArray[np.int64],
    bpm: NDArray[np.int32],
    classification: NDArray[np.uint8],
    codec: Codec,
) -> bytes:
    ts = _checked(ts_ms, "ts_ms", -(1 << 63), (1 << 63) - 1)
    hr = _checked(bpm, "bpm", -(1 << 31), (1 << 31) - 1)
    cls = _checked(classification, "classification", 0, 255)
    n = ts.size
    if not 1 <= n <= _MAX_READINGS or hr.size != n or cls.size != n:
        raise ValueError(
            f"need 1..{_MAX_READINGS} readings, equal lengths: {n}/{hr.size}/{cls.size}"
        )
    if n > 1 and not bool(np.all(ts[1:] > ts[:-1])):
        raise ValueError("ts_ms must be strictly ascending")
    code_c, planes_c = split_planes(cls.view(np.uint64))
    flags, parts = codec.ident, []
    for candidates in (_ts_candidates(ts), _bpm_candidates(hr), [(0, bytes([code_c]), planes_c)]):
        encoded = [
            (bits, head + b"".join(framed(p, codec) for p in planes))
            for bits, head, planes in candidates
        ]
        bits, best = min(encoded, key=lambda c: len(c[1]))
        flags |= bits
        parts.append(best)
    body = struct.pack(HEADER_FORMAT, _VERSION, flags, n, int(ts[0]), int(ts[-1])) + b"".join(parts)
    return body + _CRC.pack(zlib.crc32(body))


def _decode(
    blob: bytes, codecs: Mapping[int, Codec]
) -> tuple[NDArray[np.int64], NDArray[np.int32], NDArray[np.uint8]]:
    header = chunk_header(blob)
    n, flags = header.count, blob[1]
    if zlib.crc32(blob[: -_CRC.size]) != _CRC.unpack_from(blob, len(blob) - _CRC.size)[0]:
        raise CorruptChunk("checksum mismatch: truncated or garbled blob")
    if flags & _RESERVED or (flags & _CODEC_MASK and flags & _CODEC_MASK not in codecs):
        raise CorruptChunk(f"unknown flags {flags:#04x}")
    reader = PlaneReader(blob, HEADER_SIZE, len(blob) - _CRC.size, codecs.get(flags & _CODEC_MASK))
    try:
        if flags & _TS_GRID:
            period_us, code_k, code_o = reader.varint(), reader.byte(), reader.byte()
            k = np.concatenate(([0], np.cumsum(reader.values(code_k, n - 1).view(np.int64))))
            off = unzigzag(reader.values(code_o, n))
            ts = (header.first_ts - int(off[0])) + (k * period_us + 500) // 1000 + off
        else:
            median, code = np.uint64(reader.varint()), reader.byte()
            d = unzigzag(reader.values(code, n - 1)).view(np.uint64) + median
            first = np.array([header.first_ts], np.int64).view(np.uint64)
            ts = np.cumsum(np.concatenate((first, d))).view(np.int64)
        start, code = unzz(reader.varint()), reader.byte()
        if flags & _BPM_OFFSET:
            hr = start + reader.values(code, n).view(np.int64)
        else:
            hr = start + np.cumsum(np.concatenate(([0], unzigzag(reader.values(code, n - 1)))))
        cls = reader.values(reader.byte(), n)
    except CorruptChunk:
        raise
    except (ValueError, OverflowError, TypeError, IndexError, brotli.error) as exc:
        raise CorruptChunk(f"undecodable payload: {exc}") from exc
    if reader.pos != reader.end:
        raise CorruptChunk(f"{reader.end - reader.pos} unread bytes after the planes")
    if int(ts[0]) != header.first_ts or int(ts[-1]) != header.last_ts or np.any(ts[1:] <= ts[:-1]):
        raise CorruptChunk("timestamps do not match the header or are not ascending")
    if np.any(hr < -(1 << 31)) or np.any(hr >= 1 << 31) or np.any(cls > 255):
        raise CorruptChunk("bpm or classification out of range")
    return ts.astype(np.int64), hr.astype(np.int32), cls.astype(np.uint8)


def encode_chunk(
    ts_ms: NDArray[np.int64], bpm: NDArray[np.int32], classification: NDArray[np.uint8]
) -> bytes:
    """One chunk blob of the readings; ts_ms strictly ascending, all three of one length >= 1.

    Raises ValueError on unequal lengths, none or more than 2**22 readings, unordered or duplicate
    timestamps, or values outside int64 / int32 / 0..255. Anything else round-trips exactly.
    """
    return _encode(ts_ms, bpm, classification, BROTLI)


def decode_chunk(blob: bytes) -> tuple[NDArray[np.int64], NDArray[np.int32], NDArray[np.uint8]]:
    """The readings of a blob from encode_chunk: (ts_ms, bpm, classification); else CorruptChunk."""
    return _decode(blob, {BROTLI.ident: BROTLI})


def chunk_header(blob: bytes) -> ChunkHeader:
    """The header alone (no decompression); CorruptChunk if it is short, unknown or inconsistent."""
    if len(blob) < HEADER_SIZE + _CRC.size:
        raise CorruptChunk(f"truncated: {len(blob)} bytes, a chunk has at least {HEADER_SIZE + 4}")
    version, _, count, first_ts, last_ts = struct.unpack_from(HEADER_FORMAT, blob)
    if version != _VERSION:
        raise CorruptChunk(f"unknown chunk format version {version}")
    span = last_ts - first_ts
    if not 1 <= count <= _MAX_READINGS or span < count - 1 or (count == 1 and span):
        raise CorruptChunk(f"inconsistent header: count {count}, ts {first_ts}..{last_ts}")
    return ChunkHeader(count, first_ts, last_ts)
