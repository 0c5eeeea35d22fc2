"""Byte planes: the field encoding under store/codec.py's chunks.

An array of unsigned 64-bit values is cut into byte planes (the low bytes of all values, then the
next bytes, ...); a top plane of 0/1 values is bit-packed. Each plane is framed by
varint(2 * length + raw) and compressed on its own by a general-purpose codec (brotli here), or
kept raw when that is not smaller. Signed values go through zigzag first. The reader never reads
past the end it is given (the chunk's checksum) and raises CorruptChunk on anything malformed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import brotli  # type: ignore[import-untyped]
import numpy as np
from numpy.typing import NDArray

from heartrate_serve.core.errors import CorruptChunk

PACKED = 0x10  # width code: the top plane holds bits, packed 8 to a byte
_BROTLI_QUALITY, _BROTLI_LGWIN = 3, 10  # measured: see loadtest/bench_codec.py

U64 = NDArray[np.uint64]
I64 = NDArray[np.int64]


@dataclass(frozen=True)
class Codec:
    """A general-purpose byte codec for planes; decompress(data, size) must return size bytes."""

    ident: int
    compress: Callable[[bytes], bytes]
    decompress: Callable[[bytes, int], bytes]


BROTLI = Codec(
    1,
    lambda data: bytes(brotli.compress(data, quality=_BROTLI_QUALITY, lgwin=_BROTLI_LGWIN)),
    lambda data, _size: bytes(brotli.decompress(data)),
)


def varint(value: int) -> bytes:
    """value (>= 0) as an unsigned LEB128 varint."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def zz(value: int) -> int:
    """Zigzag of one int: 0, -1, 1, -2, ... -> 0, 1, 2, 3, ..."""
    return 2 * value if value >= 0 else -2 * value - 1


def unzz(value: int) -> int:
    """The inverse of zz."""
    return value >> 1 if not value & 1 else -(value >> 1) - 1


def zigzag(x: I64) -> U64:
    """zz of every value, vectorised."""
    return ((x << 1) ^ (x >> 63)).view(np.uint64)


def unzigzag(u: U64) -> I64:
    """The inverse of zigzag."""
    return ((u >> np.uint64(1)) ^ (np.uint64(0) - (u & np.uint64(1)))).view(np.int64)


def split_planes(values: U64) -> tuple[int, list[bytes]]:
    """Width code (byte count, | PACKED if the top plane is 0/1) and the byte planes, low first."""
    top = int(values.max()) if values.size else 0
    width = (top.bit_length() + 7) // 8
    if width == 0:
        return 0, []
    raw = np.ascontiguousarray(values, dtype="<u8").view(np.uint8).reshape(-1, 8)
    cols = np.ascontiguousarray(raw[:, :width].T)
    planes = [cols[i].tobytes() for i in range(width)]
    if top >> (8 * (width - 1)) <= 1:
        planes[-1] = np.packbits(cols[-1]).tobytes()
        return width | PACKED, planes
    return width, planes


def framed(plane: bytes, codec: Codec) -> bytes:
    """A plane with its varint frame: compressed when that is smaller, else raw."""
    packed = codec.compress(plane)
    if len(packed) < len(plane):
        return varint(2 * len(packed)) + packed
    return varint(2 * len(plane) + 1) + plane


class PlaneReader:
    """Reads a blob's fields: varints, width codes and framed planes, never past the checksum."""

    def __init__(self, blob: bytes, start: int, end: int, codec: Codec | None) -> None:
        self.blob, self.pos, self.end, self.codec = blob, start, end, codec

    def byte(self) -> int:
        if self.pos >= self.end:
            raise CorruptChunk("truncated payload")
        self.pos += 1
        return self.blob[self.pos - 1]

    def varint(self) -> int:
        value = shift = 0
        while True:
            b = self.byte()
            value |= (b & 0x7F) << shift
            if b < 0x80 or shift > 63:
                return value
            shift += 7

    def values(self, code: int, n: int) -> U64:
        width, out = code & 0x0F, np.zeros(n, np.uint64)
        if code & ~(0x0F | PACKED) or width > 8 or (code & PACKED and not width):
            raise CorruptChunk(f"bad plane width code {code:#x}")
        for i in range(width):
            packed = code & PACKED and i == width - 1
            size = (n + 7) // 8 if packed else n
            frame = self.varint()
            start, self.pos = self.pos, self.pos + frame // 2
            if self.pos > self.end:
                raise CorruptChunk("truncated plane")
            data = self.blob[start : self.pos]
            if not frame & 1:
                if self.codec is None:
                    raise CorruptChunk("compressed plane in a chunk without a codec")
                data = self.codec.decompress(data, size)
            if len(data) != size:
                raise CorruptChunk(f"plane of {len(data)} bytes, expected {size}")
            col = np.frombuffer(data, np.uint8)
            out |= (np.unpackbits(col, count=n) if packed else col).astype(np.uint64) << (8 * i)
        return out
