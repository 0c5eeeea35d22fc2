"""Readings as arrays, and how a read's hot members and compacted chunks become them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from heartrate_serve.core.errors import CorruptChunk, CorruptData
from heartrate_serve.store.codec import decode_chunk


@dataclass(frozen=True)
class Readings:
    """Stored readings of one user (ascending by ts_ms unless a method says otherwise)."""

    ts_ms: NDArray[np.int64]
    bpm: NDArray[np.int32]
    classification: NDArray[np.uint8]

    @classmethod
    def empty(cls) -> Readings:
        """No readings."""
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.uint8))

    def __len__(self) -> int:
        return len(self.ts_ms)

    def _take(self, index: NDArray[np.intp] | NDArray[np.bool_] | slice) -> Readings:
        return Readings(self.ts_ms[index], self.bpm[index], self.classification[index])

    def between(self, from_ms: int, to_ms: int) -> Readings:
        """The readings with from_ms <= ts_ms <= to_ms."""
        return self._take((self.ts_ms >= from_ms) & (self.ts_ms <= to_ms))

    def first(self, limit: int | None) -> Readings:
        """The first `limit` readings (all when limit is None)."""
        return self if limit is None else self._take(slice(0, max(limit, 0)))

    def newest(self, n: int) -> Readings:
        """The newest n readings, newest first."""
        return self._take(slice(None, None, -1))._take(slice(0, n))


def parse_members(members: Sequence[bytes]) -> Readings:
    """Decodes hot-part members "%013d:bpm:class" into arrays (in the given order)."""
    return parse_joined(b",".join(members))


def parse_joined(joined: bytes) -> Readings:
    """Decodes hot-part members joined by ',' (as read.lua answers them) into arrays."""
    if not joined:
        return Readings.empty()
    cols = np.array(joined.replace(b",", b":").split(b":")).reshape(-1, 3)
    return Readings(
        cols[:, 0].astype(np.int64), cols[:, 1].astype(np.int32), cols[:, 2].astype(np.uint8)
    )


def merge_read(user_id: str, hot: bytes, chunks: Sequence[bytes], cut_ms: bytes | None) -> Readings:
    """One user's readings, ascending, from read.lua's reply: hot members joined by ',' (any
    order), flat
    (start, blob) pairs of compacted chunks, and the retention cut-off of the last write.

    Raises CorruptData naming the user and the chunk when a blob cannot be decoded."""
    parts = [parse_joined(hot)]
    for start, blob in zip(chunks[0::2], chunks[1::2], strict=True):
        try:
            ts, bpm, cls = decode_chunk(bytes(blob))
        except CorruptChunk as error:
            chunk = int(float(start))
            raise CorruptData(
                f"stored readings of user {user_id!r} in the chunk starting at ts_ms {chunk} "
                f"cannot be decoded: {error}"
            ) from error
        parts.append(Readings(ts, bpm, cls))
    ts = np.concatenate([p.ts_ms for p in parts])
    order = np.argsort(ts, kind="stable")
    merged = Readings(
        ts[order],
        np.concatenate([p.bpm for p in parts])[order],
        np.concatenate([p.classification for p in parts])[order],
    )
    if cut_ms is not None:
        merged = merged._take(merged.ts_ms >= int(cut_ms))
    return merged
