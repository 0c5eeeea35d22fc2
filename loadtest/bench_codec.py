"""Benchmarks the chunk codec: bytes per reading, encode and decode time, for several kinds of data.

Run from the repository root: python -m heartrate_serve.loadtest.bench_codec
Every figure is measured on this run (fixed seed); the codec comparison runs the codec's own
pipeline (representations, byte planes, framing, checksum) with each general-purpose compressor.
"""

from __future__ import annotations

import bz2
import importlib
import lzma
import time
import zlib
from typing import Any

import brotli  # type: ignore[import-untyped]
import numpy as np
from numpy.typing import NDArray

# _encode and _decode (private) run the codec's pipeline with another compressor (a Codec).
from heartrate_serve.store.byte_planes import Codec
from heartrate_serve.store.codec import _decode, _encode, decode_chunk, encode_chunk

SEED = 20261130
T0_MS = 1_750_000_000_000
DAY_S = 86_400
SPANS_MIN = (15, 30, 60, 120)
REPEATS = 3

Series = tuple[NDArray[np.int64], NDArray[np.int32], NDArray[np.uint8]]


def wander(rng: np.random.Generator, n: int) -> NDArray[np.int32]:
    """Heart rate wandering -3..+3 bpm per second, folded back at 40 and 200 (never stuck there)."""
    walk = 100 + np.cumsum(rng.integers(-3, 4, n)) - 40
    folded = walk % 320
    return (40 + np.where(folded <= 160, folded, 320 - folded)).astype(np.int32)


def classes(bpm: NDArray[np.int32]) -> NDArray[np.uint8]:
    """NORMAL 50-150 bpm, LOW below, HIGH above (the default bands)."""
    return np.where(bpm < 50, 1, np.where(bpm > 150, 2, 0)).astype(np.uint8)


def _jittered(rng: np.random.Generator, n: int, period_ms: int) -> NDArray[np.int64]:
    grid = T0_MS + np.arange(n, dtype=np.int64) * period_ms
    return grid + rng.integers(-150, 151, n)


def kinds(rng: np.random.Generator) -> dict[str, Series]:
    """A day of each kind of data, all in ascending unique timestamps."""
    n = DAY_S
    ts, bpm = _jittered(rng, n, 1000), wander(rng, n)
    out = {"(a) 1 Hz, +-150 ms jitter": (ts, bpm, classes(bpm))}
    walk_ts = T0_MS + np.cumsum(1000 + rng.integers(-150, 151, n))
    out["(b) irregular: 1000+-150 ms steps"] = (walk_ts, bpm, classes(bpm))
    keep = np.ones(n, bool)
    for start in rng.integers(0, n - 1800, 6):  # device off 10-30 min, six times a day
        keep[start : start + rng.integers(600, 1801)] = False
    dup = rng.random(n) < 0.002  # re-sent readings: same ts, dropped again by np.unique
    gap_ts = np.concatenate((ts[keep], ts[keep & dup]))
    gap_bpm = np.concatenate((bpm[keep], bpm[keep & dup]))
    gap_ts, first = np.unique(gap_ts, return_index=True)
    out["(c) 1 Hz, gaps, dups removed"] = (gap_ts, gap_bpm[first], classes(gap_bpm[first]))
    slow_bpm = wander(rng, n)[::5]
    out["(d) 5 s sampling"] = (_jittered(rng, n // 5, 5000), slow_bpm, classes(slow_bpm))
    rand_bpm = rng.integers(40, 201, n).astype(np.int32)
    out["(e) random bpm 40..200"] = (ts, rand_bpm, classes(rand_bpm))
    return out


def chunks(series: Series, span_ms: int) -> list[Series]:
    """The series cut at multiples of span_ms (epoch-aligned), like the store's closed chunks."""
    ts, bpm, cls = series
    cuts = np.flatnonzero(np.diff(ts // span_ms)) + 1
    return list(zip(np.split(ts, cuts), np.split(bpm, cuts), np.split(cls, cuts), strict=True))


def measure(
    parts: list[Series], codec: Codec | None = None
) -> tuple[float, float, float, list[bytes]]:
    """Bytes per reading (blob incl. header), best-of-REPEATS encode and decode us per chunk.

    codec None: encode_chunk / decode_chunk; else the codec's pipeline with that compressor.
    """

    def encode(p: Series) -> bytes:
        return encode_chunk(*p) if codec is None else _encode(p[0], p[1], p[2], codec)

    def decode(b: bytes) -> Series:
        return decode_chunk(b) if codec is None else _decode(b, {codec.ident: codec})

    blobs = [encode(p) for p in parts]
    for part, blob in zip(parts, blobs, strict=True):
        got = decode(blob)
        assert all(np.array_equal(got[i], part[i]) for i in range(3)), "no exact round trip"
    enc = dec = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        for p in parts:
            encode(p)
        mid = time.perf_counter()
        for b in blobs:
            decode(b)
        end = time.perf_counter()
        enc, dec = min(enc, mid - start), min(dec, end - mid)
    readings = sum(len(p[0]) for p in parts)
    per_chunk = 1e6 / len(parts)
    return sum(map(len, blobs)) / readings, enc * per_chunk, dec * per_chunk, blobs


def _lzma_codec(ident: int, **options: Any) -> Codec:
    filters = [{"id": lzma.FILTER_LZMA2, "dict_size": 1 << 16, **options}]
    spec = [{k: v for k, v in filters[0].items() if k in ("id", "dict_size", "lc", "lp", "pb")}]
    return Codec(
        ident,
        lambda b: lzma.compress(b, format=lzma.FORMAT_RAW, filters=filters),
        lambda b, _: lzma.decompress(b, format=lzma.FORMAT_RAW, filters=spec),
    )


def _brotli_codec(quality: int, lgwin: int) -> Codec:
    return Codec(
        1,
        lambda b: bytes(brotli.compress(b, quality=quality, lgwin=lgwin)),
        lambda b, _: bytes(brotli.decompress(b)),
    )


def _deflate_codec(level: int) -> Codec:
    def compress(data: bytes) -> bytes:
        raw = zlib.compressobj(level, zlib.DEFLATED, -15)  # raw deflate: no zlib header
        return raw.compress(data) + raw.flush()

    return Codec(2, compress, lambda b, _: zlib.decompress(b, -15))


def codecs() -> dict[str, Codec]:
    """The compressors compared; zstandard and lz4 only when installed."""
    out = {f"brotli q{q} lgwin{w}": _brotli_codec(q, w) for q, w in ((2, 10), (3, 10), (4, 10))}
    out |= {f"brotli q{q} lgwin{w}": _brotli_codec(q, w) for q, w in ((4, 16), (5, 10), (11, 16))}
    for level in (6, 9):
        out[f"zlib {level} raw deflate"] = _deflate_codec(level)
    normal = {"mode": lzma.MODE_NORMAL, "mf": lzma.MF_BT4, "nice_len": 64}
    for lc, lp, pb in ((0, 0, 0), (3, 0, 2), (1, 1, 0)):
        out[f"lzma2 raw lc{lc}lp{lp}pb{pb}"] = _lzma_codec(2, lc=lc, lp=lp, pb=pb, **normal)
    fast = {"mode": lzma.MODE_FAST, "mf": lzma.MF_HC3, "nice_len": 16}
    out["lzma2 raw lc0lp0pb0 fast"] = _lzma_codec(2, lc=0, lp=0, pb=0, **fast)
    out["bz2 9"] = Codec(2, lambda b: bz2.compress(b, 9), lambda b, _: bz2.decompress(b))
    try:
        zstd: Any = importlib.import_module("zstandard")
        for level in (3, 19):
            comp = zstd.ZstdCompressor(level=level, write_content_size=False)
            out[f"zstd {level}"] = Codec(
                2,
                comp.compress,
                lambda b, size: zstd.ZstdDecompressor().decompress(b, max_output_size=size),
            )
    except ImportError:
        print("(zstandard not installed: pip install zstandard to compare it)")
    try:
        lz4_block: Any = importlib.import_module("lz4.block")
        out["lz4 hc"] = Codec(
            2,
            lambda b: lz4_block.compress(b, mode="high_compression", store_size=False),
            lambda b, size: lz4_block.decompress(b, uncompressed_size=size),
        )
    except ImportError:
        print("(lz4 not installed: pip install lz4 to compare it)")
    return out


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    """Prints the per-kind table and the codec comparison for kind (a) in 1 h chunks."""
    started = time.perf_counter()
    data = kinds(np.random.default_rng(SEED))
    print("## Chunk codec (encode_chunk / decode_chunk), a day of each kind\n")
    head = [
        "data",
        "span",
        "readings/chunk",
        "B/reading",
        "enc us/chunk",
        "dec us/chunk",
        "ts grid",
    ]
    print(_row(head))
    print(_row(["---"] * len(head)))
    for name, series in data.items():
        for span in SPANS_MIN:
            parts = chunks(series, span * 60_000)
            per_reading, enc, dec, blobs = measure(parts)
            grid = sum(1 for b in blobs if b[1] & 0x04) / len(blobs)
            cells = [
                name,
                f"{span} min",
                f"{len(series[0]) / len(parts):.0f}",
                f"{per_reading:.3f}",
            ]
            print(_row([*cells, f"{enc:.0f}", f"{dec:.0f}", f"{grid:.0%}"]))
    print("\n## Compressors for kind (a), 1 h chunks (same planes, each plane compressed alone)\n")
    compared = codecs()
    head = ["compressor", "B/reading", "enc us/chunk", "dec us/chunk"]
    print(_row(head))
    print(_row(["---"] * len(head)))
    parts = chunks(data["(a) 1 Hz, +-150 ms jitter"], 3_600_000)
    for name, codec in compared.items():
        per_reading, enc, dec, _ = measure(parts, codec)
        print(_row([name, f"{per_reading:.3f}", f"{enc:.0f}", f"{dec:.0f}"]))
    print(f"\n({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
